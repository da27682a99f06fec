/**
 * The package as a user installs it: `npm run build`, then a program of theirs that imports the
 * library, the server entry and the typed client by their subpaths, type-checked against the
 * built declarations and run with plain `node` (no tsx), starting the whole service with its own
 * TypeScript deriver.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeriverLive } from '../src/server/index.ts';
import { tempDir } from './helpers.ts';
import { listeningUrl } from './support/processes.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const temp = tempDir();

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
  execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'pipe' });
  const modules = join(temp.dir, 'node_modules');
  mkdirSync(modules);
  symlinkSync(ROOT, join(modules, 'deriver-live'), 'dir');
  writeFileSync(join(temp.dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  writeFileSync(join(temp.dir, 'consumer.ts'), CONSUMER);
  writeFileSync(
    join(temp.dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: true,
        typeRoots: [join(ROOT, 'node_modules/@types')],
        types: ['node'],
        outDir: 'out',
      },
      files: ['consumer.ts'],
    }),
  );
}, 120_000);
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

describe('the production start: the compiled server, no tsx', () => {
  it('runs `node dist/server/main.js` with flags, migrates, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      'node',
      [join(ROOT, 'dist/server/main.js'), '--port', '0', '--database-url', `file:${temp.path('prod.db')}`],
      {
        cwd: temp.dir,
        env: { ...process.env, NODE_OPTIONS: '', LOG_LEVEL: 'warn' },
        stdio: 'pipe',
      },
    );
    try {
      const url = await listeningUrl(child);
      const ready = await fetch(url.replace('/graphql', '/readyz'));
      expect(ready.status).toBe(200);
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
