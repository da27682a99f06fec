/**
 * The package as a user installs it: `npm pack` (which builds it), the tarball installed into an
 * empty folder, a program of theirs that imports the library, the server entry and the typed
 * client by their subpaths, type-checked against the shipped declarations with
 * `skipLibCheck: false` and run with plain `node` (no tsx), starting the whole service with its own
 * TypeScript deriver; and the `deriver-live` command from that install: `--help`, `key create`,
 * `start`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeriverLive } from '../src/server/index.ts';
import { tempDir } from './helpers.ts';
import { listeningUrl } from './support/processes.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const temp = tempDir();
const SECRET = 'package-test-secret-0123456789-abcdef';

const CONSUMER = `
import { limits, type Counters } from 'deriver-live';
import { createDeriverClient } from 'deriver-live/client';
import { startDeriverLive, type TaskHandler } from 'deriver-live/server';

// A deriver that needs the message contents: it "learns" the words each observer saw.
const learned: string[] = [];
const representation: TaskHandler = ({ task, attempt }) => {
  const words = task.messages.flatMap((m) => m.content.split(' '));
  learned.push(\`\${task.key.observerId} learned [\${words.join(',')}] from \${task.key.senderId} (attempt \${attempt})\`);
};
const summary: TaskHandler = ({ task }) => {
  learned.push(\`summary \${task.summary?.level} \${task.summary?.fromSeq}-\${task.summary?.toSeq}: \${task.messages.length} messages\`);
};

const app = await startDeriverLive({
  handlers: { representation, summary },
  env: {},
  config: { port: 0, databaseUrl: 'file:' + process.argv[2], logLevel: 'silent' },
});
const client = createDeriverClient({ url: app.url });
await client.upsertWorkspace({ id: 'default', settings: { messagesPerShortSummary: 2 } });
await client.upsertSession({ id: 'chat', peers: [{ peerId: 'alice', observeOthers: true }, { peerId: 'bob' }] });
await client.addMessages({
  sessionId: 'chat',
  messages: [
    { peerId: 'bob', content: 'hello alice' },
    { peerId: 'alice', content: 'hi bob' },
  ],
});
const status = await client.waitForIdle({ sessionId: 'chat' });
const zero: Counters = { pending: 0, running: 0, completed: 0, failed: 0, retrying: 0 };
process.stdout.write(JSON.stringify({ learned: learned.sort(), status, limit: limits.messagesPerSummary, zero }));
await client.close();
await app.close();
`;

beforeAll(() => {
  const run = (command: string, args: string[]) =>
    execFileSync(command, args, { cwd: temp.dir, stdio: 'pipe', encoding: 'utf8' });
  writeFileSync(join(temp.dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  execFileSync('npm', ['pack', '--silent', '--pack-destination', temp.dir], { cwd: ROOT, stdio: 'pipe' });
  const tarball = readdirSync(temp.dir).find((name) => name.endsWith('.tgz')) ?? 'no tarball';
  const devVersion = (name: string) =>
    JSON.parse(
      execFileSync('npm', ['pkg', 'get', `devDependencies.${name}`], { cwd: ROOT, encoding: 'utf8' }),
    ) as string;
  // Install scripts are skipped (better-sqlite3 would compile for a minute); the addon this
  // checkout built for the same Node.js is copied in instead.
  run('npm', [
    'install',
    '--ignore-scripts',
    '--prefer-offline',
    '--no-audit',
    '--no-fund',
    `./${tarball}`,
    `@types/node@${devVersion('@types/node')}`,
  ]);
  cpSync(
    join(ROOT, 'node_modules/better-sqlite3/build'),
    join(temp.dir, 'node_modules/better-sqlite3/build'),
    {
      recursive: true,
    },
  );
  writeFileSync(join(temp.dir, 'consumer.ts'), CONSUMER);
  writeFileSync(
    join(temp.dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: false,
        types: ['node'],
        outDir: 'out',
      },
      files: ['consumer.ts'],
    }),
  );
}, 300_000);
afterAll(() => temp.remove());

describe('the package, built and imported by its subpaths', () => {
  it('type-checks a program against the built declarations and runs it with node: its handler gets the message contents', () => {
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', temp.dir], { cwd: temp.dir, stdio: 'pipe' });
    const out = execFileSync('node', [join(temp.dir, 'out/consumer.js'), temp.path('consumer.db')], {
      cwd: temp.dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const result = JSON.parse(out) as { learned: string[]; status: Record<string, number>; limit: number };
    expect(result.learned).toEqual([
      'alice learned [hello,alice] from bob (attempt 1)',
      'alice learned [hi,bob] from alice (attempt 1)',
      'bob learned [hello,alice] from bob (attempt 1)',
      'summary short 1-2: 2 messages',
    ]);
    expect(result.status).toMatchObject({ totalWorkUnits: 4, completedWorkUnits: 4, failedWorkUnits: 0 });
    expect(result.limit).toBe(1_000);
  }, 120_000);
});

describe('the deriver-live command, from the installed package', () => {
  const npx = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    execFileSync('npx', ['--no-install', 'deriver-live', ...args], {
      cwd: temp.dir,
      env: { ...process.env, NODE_OPTIONS: '', ...env },
      encoding: 'utf8',
      stdio: 'pipe',
    });

  it('`npx deriver-live --help` lists its commands', () => {
    const help = npx(['--help']);
    expect(help).toMatch(/^Usage: deriver-live <command>/);
    expect(help).toContain('key create');
    expect(npx(['start', '--help'])).toContain('--database-url, DATABASE_URL');
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(npx(['--version']).trim()).toBe(version);
  });

  it('starts the compiled server with auth on; a key from `deriver-live key create` is let in, no key is not; SIGTERM exits 0', async () => {
    const key = npx(['key', 'create', '--workspace', 'acme', '--expires-in', '1h'], {
      AUTH_JWT_SECRET: SECRET,
    }).trim();
    // The installed command itself (as a service manager runs it), so SIGTERM reaches the server.
    const child = spawn(
      join(temp.dir, 'node_modules/.bin/deriver-live'),
      ['start', '--port', '0', '--database-url', `file:${temp.path('prod.db')}`],
      {
        cwd: temp.dir,
        env: { ...process.env, NODE_OPTIONS: '', LOG_LEVEL: 'warn', AUTH_JWT_SECRET: SECRET },
        stdio: 'pipe',
      },
    );
    try {
      const url = await listeningUrl(child);
      const ask = (authorization?: string) =>
        fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
          body: JSON.stringify({ query: '{deriverStatus(workspaceId:"acme"){totalWorkUnits}}' }),
        });
      expect((await ask()).status).toBe(401);
      const answer = await ask(`Bearer ${key}`);
      expect(await answer.json()).toEqual({ data: { deriverStatus: { totalWorkUnits: 0 } } });
      const dashboard = await fetch(url.replace('/graphql', '/'));
      expect(dashboard.headers.get('content-type')).toBe('text/html; charset=utf-8');
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('startDeriverLive', () => {
  it('refuses at start, in one line, a deriver without a handler for every task type', async () => {
    const dir = tempDir();
    try {
      await expect(
        startDeriverLive({
          handlers: { representation: () => {} } as never,
          env: {},
          config: { port: 0, databaseUrl: `file:${dir.path('x.db')}`, logLevel: 'silent' },
        }),
      ).rejects.toThrow(
        'handlers.summary: no handler for task type "summary": give one handler per task type (representation, summary)',
      );
    } finally {
      dir.remove();
    }
  });

  it('refuses in-process handlers together with HANDLER_URL', async () => {
    await expect(
      startDeriverLive({
        handlers: { representation: () => {}, summary: () => {} },
        env: { HANDLER_URL: 'http://127.0.0.1:9/' },
        config: { port: 0, logLevel: 'silent' },
      }),
    ).rejects.toThrow('HANDLER_URL is set and in-process handlers were given');
  });
});
