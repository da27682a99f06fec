/**
 * Honcho's 1.x TypeScript SDK (`@honcho-ai/sdk` 1.5.0, which calls Honcho's v2 API), unchanged:
 * the code of Honcho's "Queue Status" page run verbatim as a child process configured only by the
 * SDK's own environment variables (auth off, and a workspace, a session and a peer key), then the
 * SDK's other workspace, peer, session and message calls in process. Every run ends with exact
 * counts: equal to what GraphQL answers for the same scope.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Honcho } from 'honcho-sdk-v1';
import { afterEach, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import type { Scope } from '../src/auth/scope.ts';
import { createDeriverClient } from '../src/client/index.ts';
import { tempDir } from './helpers.ts';
import { startTestServer } from './server-helpers.ts';

const SECRET = 'a-jwt-secret-for-the-honcho-v1-test-32bytes';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The TypeScript snippet of Honcho's "Queue Status" page, verbatim. */
const QUEUE_STATUS_PAGE = `import { Honcho } from '@honcho-ai/sdk';
const honcho = new Honcho({});            // HONCHO_URL / HONCHO_WORKSPACE_ID / HONCHO_API_KEY from the environment
const status = await honcho.getDeriverStatus();
await honcho.pollDeriverStatus();
`;
/** Appended so the test can read what the snippet saw. */
const REPORT = `console.log(JSON.stringify({ first: status, last: await honcho.getDeriverStatus() }));\n`;

/** A folder where `@honcho-ai/sdk` is the 1.5.0 package (installed here under the alias `honcho-sdk-v1`). */
function v1Project(): string {
  const temp = tempDir();
  cleanups.push(() => temp.remove());
  mkdirSync(temp.path('node_modules/@honcho-ai'), { recursive: true });
  symlinkSync(resolve('node_modules/honcho-sdk-v1'), temp.path('node_modules/@honcho-ai/sdk'), 'dir');
  writeFileSync(temp.path('seed.mjs'), QUEUE_STATUS_PAGE + REPORT);
  return temp.dir;
}

interface SeenStatus {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
}

/** Runs the snippet with only the SDK's environment; resolves with what it printed, rejects on a failure. */
function runSnippet(
  dir: string,
  env: Record<string, string>,
): Promise<{ first: SeenStatus; last: SeenStatus }> {
  return new Promise((done, fail) => {
    const { HONCHO_URL: _u, HONCHO_API_KEY: _k, HONCHO_WORKSPACE_ID: _w, ...rest } = process.env;
    const child = spawn(process.execPath, [join(dir, 'seed.mjs')], { cwd: dir, env: { ...rest, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    child.once('exit', (code) =>
      code === 0 ? done(JSON.parse(out.trim())) : fail(new Error(`the snippet exited with ${code}:\n${err}`)),
    );
  });
}

const counts = (s: SeenStatus) => ({
  totalWorkUnits: s.totalWorkUnits,
  completedWorkUnits: s.completedWorkUnits,
  inProgressWorkUnits: s.inProgressWorkUnits,
  pendingWorkUnits: s.pendingWorkUnits,
});

it("the README's Coming from Honcho shows this snippet, as it runs here", () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## Coming from Honcho'));
  // The same code; the README's formatter only narrows the space before the comment.
  const words = (code: string | undefined) => code?.replace(/\s+/g, ' ');
  expect(words(/```js\n([\s\S]*?)```/.exec(section)?.[1])).toBe(words(QUEUE_STATUS_PAGE));
});

it.each([
  ['auth off', null],
  ['a workspace key', { kind: 'workspace', workspaceId: 'acme' }],
  ['a session key', { kind: 'session', workspaceId: 'acme', sessionId: 'chat' }],
  ['a peer key', { kind: 'peer', workspaceId: 'acme', peerId: 'bob' }],
] as [string, Scope | null][])(
  'the Queue Status page runs verbatim with %s and ends with exact counts',
  async (_name, scope) => {
    const server = await startTestServer({ config: scope ? { authJwtSecret: SECRET } : {} });
    cleanups.push(() => server.close());
    const keys = createKeyring({ secret: SECRET });
    const admin = createDeriverClient({
      url: server.url,
      token: scope ? await keys.mint({ kind: 'admin' }, null) : undefined,
    });
    cleanups.push(() => admin.close());
    await admin.upsertSession({
      workspaceId: 'acme',
      id: 'chat',
      peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
    });
    await admin.addMessages({
      workspaceId: 'acme',
      sessionId: 'chat',
      messages: [
        { peerId: 'alice', content: 'hi' },
        { peerId: 'bob', content: 'hello' },
      ],
    });
    await admin.upsertSession({ workspaceId: 'acme', id: 'other', peers: [{ peerId: 'carol' }] });
    await admin.addMessages({
      workspaceId: 'acme',
      sessionId: 'other',
      messages: [{ peerId: 'carol', content: 'x' }],
    });

    const seen = await runSnippet(v1Project(), {
      HONCHO_URL: new URL(server.url).origin,
      HONCHO_WORKSPACE_ID: 'acme',
      ...(scope ? { HONCHO_API_KEY: await keys.mint(scope, null) } : {}),
    });
    // What the key reaches: a session key its session, a peer key what its peer observes.
    const filter =
      scope?.kind === 'session' ? { sessionId: 'chat' } : scope?.kind === 'peer' ? { observerId: 'bob' } : {};
    const expected = await admin.getDeriverStatus({ workspaceId: 'acme', ...filter });
    expect(expected.totalWorkUnits).toBe(scope?.kind === 'session' ? 3 : scope?.kind === 'peer' ? 2 : 4);
    expect(seen.first.totalWorkUnits).toBe(expected.totalWorkUnits);
    expect(counts(seen.last)).toEqual({
      totalWorkUnits: expected.totalWorkUnits,
      completedWorkUnits: expected.totalWorkUnits,
      inProgressWorkUnits: 0,
      pendingWorkUnits: 0,
    });
    expect(counts(seen.last)).toEqual(counts(expected));
  },
);

it("the 1.x SDK's workspace, peer, session and message calls work with stored metadata", async () => {
  const server = await startTestServer({ config: { authJwtSecret: SECRET } });
  cleanups.push(() => server.close());
  const keys = createKeyring({ secret: SECRET });
  const honcho = new Honcho({
    baseURL: new URL(server.url).origin,
    apiKey: await keys.mint({ kind: 'workspace', workspaceId: 'acme' }, null),
    workspaceId: 'acme',
    maxRetries: 0,
  });
  await honcho.setMetadata({ plan: 'pro' });
  expect(await honcho.getMetadata()).toEqual({ plan: 'pro' });
  const alice = await honcho.peer('alice');
  const bob = await honcho.peer('bob');
  await alice.setMetadata({ role: 'user' });
  expect(await alice.getMetadata()).toEqual({ role: 'user' });
  const session = await honcho.session('chat');
  // 1.x takes a session-peer config in Honcho's own snake_case.
  await session.addPeers([alice, [bob, { observe_me: true, observe_others: true }]]);
  await session.setMetadata({ topic: 'greetings' });
  expect(await session.getMetadata()).toEqual({ topic: 'greetings' });
  await session.addMessages([alice.message('hello', { metadata: { lang: 'en' } }), bob.message('hi')]);
  await session.pollDeriverStatus({ timeoutMs: 60_000 });
  const ofBob = await session.getDeriverStatus({ observerId: 'bob' });
  expect(counts(ofBob)).toEqual({
    totalWorkUnits: 2,
    completedWorkUnits: 2,
    inProgressWorkUnits: 0,
    pendingWorkUnits: 0,
  });
  // What the SDK was answered is what is stored.
  const stored = await server.app.store.getSession('acme', 'chat');
  expect(stored).toMatchObject({
    metadata: { topic: 'greetings' },
    peers: [{ peerId: 'alice' }, { peerId: 'bob' }],
  });
  const messages = await server.app.store.listMessages('acme', 'chat');
  expect(messages.map((m) => [m.peerId, m.metadata])).toEqual([
    ['alice', { lang: 'en' }],
    ['bob', {}],
  ]);
});
