/**
 * Honcho's own TypeScript SDK (`@honcho-ai/sdk`, unchanged) against a real server: get-or-create of
 * workspaces, peers and sessions, a session's peers, adding messages, and the queue status of the
 * workspace and of a session, with a key of the workspace; the counts agree with GraphQL's while
 * tasks run and after. Errors come back as the SDK's own classes.
 */
import { AuthenticationError, Honcho } from '@honcho-ai/sdk';
import { afterEach, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import { createDeriverClient } from '../src/client/index.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred } from './helpers.ts';
import { startTestServer } from './server-helpers.ts';

const SECRET = 'a-jwt-secret-for-the-honcho-sdk-test-32b';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("Honcho's SDK gets or creates, adds messages and reads the queue status; the counts agree with GraphQL", async () => {
  const release = deferred<void>();
  const started = { n: 0 };
  const handler: TaskHandler = async () => {
    started.n++;
    await release.promise;
  };
  const server = await startTestServer({
    config: { authJwtSecret: SECRET, workerConcurrency: 2 },
    handlers: { representation: handler, summary: handler },
  });
  cleanups.push(() => server.close());
  const keys = createKeyring({ secret: SECRET });
  const key = await keys.mint({ kind: 'workspace', workspaceId: 'acme' }, null);
  const honcho = new Honcho({
    baseURL: new URL(server.url).origin,
    apiKey: key,
    workspaceId: 'acme',
    maxRetries: 0,
  });
  const graphql = createDeriverClient({ url: server.url, token: key });
  cleanups.push(() => graphql.close());

  const alice = await honcho.peer('alice');
  const bob = await honcho.peer('bob');
  expect(alice.id).toBe('alice');
  const session = await honcho.session('chat', { peers: [alice] });
  await session.addPeers([[bob, { observeMe: true, observeOthers: true }]]);
  const added = await session.addMessages([alice.message('hello'), alice.message('how are you?')]);
  expect(added.map((m) => [m.peerId, m.content, m.sessionId, m.workspaceId])).toEqual([
    ['alice', 'hello', 'chat', 'acme'],
    ['alice', 'how are you?', 'chat', 'acme'],
  ]);
  const other = await honcho.session('other', { peers: [bob] });
  await other.addMessages(bob.message('hi'));

  // Both workers hold a task: the counts are still while we compare.
  await expect.poll(() => started.n).toBe(2);
  const camel = (s: {
    totalWorkUnits: number;
    completedWorkUnits: number;
    inProgressWorkUnits: number;
    pendingWorkUnits: number;
  }) => ({
    totalWorkUnits: s.totalWorkUnits,
    completedWorkUnits: s.completedWorkUnits,
    inProgressWorkUnits: s.inProgressWorkUnits,
    pendingWorkUnits: s.pendingWorkUnits,
  });
  const viaGraphql = await graphql.getDeriverStatus({ workspaceId: 'acme' });
  const viaHoncho = await honcho.queueStatus();
  expect(camel(viaHoncho)).toEqual(camel(viaGraphql));
  expect(viaHoncho.inProgressWorkUnits).toBe(2);
  expect(viaHoncho.totalWorkUnits).toBeGreaterThan(2);
  expect(Object.keys(viaHoncho.sessions ?? {}).sort()).toEqual(['chat', 'other']);
  expect(viaHoncho.sessions?.chat).toEqual({
    sessionId: 'chat',
    ...camel(viaGraphql.sessions!.find((s) => s.sessionId === 'chat')!),
  });
  const ofSession = await session.queueStatus({ observer: bob });
  expect(camel(ofSession)).toEqual(
    camel(await graphql.getDeriverStatus({ workspaceId: 'acme', sessionId: 'chat', observerId: 'bob' })),
  );
  expect(ofSession.sessions).toBeUndefined();

  release.resolve();
  await graphql.waitForIdle({ workspaceId: 'acme' });
  const done = await honcho.queueStatus();
  expect(done).toMatchObject({ pendingWorkUnits: 0, inProgressWorkUnits: 0 });
  expect(done.completedWorkUnits).toBe(viaGraphql.totalWorkUnits);

  // A key of another workspace is refused as Honcho refuses it (401: the SDK's AuthenticationError); no key at all too.
  const outsider = new Honcho({
    baseURL: new URL(server.url).origin,
    apiKey: await keys.mint({ kind: 'workspace', workspaceId: 'other' }, null),
    workspaceId: 'acme',
    maxRetries: 0,
  });
  await expect(outsider.queueStatus()).rejects.toBeInstanceOf(AuthenticationError);
  await expect(outsider.queueStatus()).rejects.toThrow(/JWT not permissioned for this resource/);
  const anonymous = new Honcho({
    baseURL: new URL(server.url).origin,
    apiKey: 'not-a-key',
    workspaceId: 'acme',
    maxRetries: 0,
  });
  await expect(anonymous.queueStatus()).rejects.toBeInstanceOf(AuthenticationError);
});

it('answers a route it does not serve, bad input and a wrong method in Honcho’s shape', async () => {
  const server = await startTestServer();
  cleanups.push(() => server.close());
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(new URL(path, server.url), {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { detail: string } };
  };
  // A wrong turn outside Honcho's routes says where things are (it was an empty 404).
  const root = await fetch(new URL('/', server.url), { method: 'POST' });
  expect(root.status).toBe(404);
  expect(((await root.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(
    /nothing is served at POST \/: the GraphQL API is at \/graphql/,
  );
  const unknown = await call('POST', '/v3/workspaces/w/peers/alice/chat', {});
  expect(unknown.status).toBe(404);
  expect(unknown.body.detail).toMatch(/not a route of Honcho's API that Deriver Live serves/);
  expect((await call('GET', '/v3/workspaces')).status).toBe(405);
  const badId = await call('POST', '/v3/workspaces', { id: 'has spaces' });
  expect(badId.status).toBe(422);
  expect(badId.body.detail).toMatch(/id/);
  // A message to a session that does not exist creates it, its sender a member (Honcho's rule).
  const newSession = await call('POST', '/v3/workspaces/w/sessions/fresh/messages', {
    messages: [{ peer_id: 'a', content: 'x' }],
  });
  expect(newSession).toMatchObject({
    status: 201,
    body: [{ session_id: 'fresh', peer_id: 'a', content: 'x' }],
  });
  expect(await server.app.store.getSession('w', 'fresh')).toMatchObject({ peers: [{ peerId: 'a' }] });
  // Honcho's ids are strings: a JSON number is refused, never rounded.
  const numeric = await fetch(new URL('/v3/workspaces', server.url), {
    method: 'POST',
    body: '{"id": 12345678901234567890}',
    headers: { 'content-type': 'application/json' },
  });
  expect(numeric.status).toBe(422);
  expect(((await numeric.json()) as { detail: string }).detail).toMatch(/id must be a string/);
  expect((await call('GET', '/v3/workspaces/%E0%A4%A/queue/status')).status).toBe(422);
  const notJson = await fetch(new URL('/v3/workspaces', server.url), {
    method: 'POST',
    body: '{',
    headers: { 'content-type': 'application/json' },
  });
  expect(notJson.status).toBe(422);
});
