/**
 * Graceful shutdown under load (SPEC 6), for real: SIGTERM to a server process in the middle of a
 * workload, then a restart on the same store: every task runs exactly once (nothing lost, nothing
 * repeated) and the process exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { tempDir } from './helpers.ts';
import { listeningUrl } from './support/processes.ts';
import { send, statusOf } from './transports.ts';

const INSTANCE = fileURLToPath(new URL('./fixtures/instance.ts', import.meta.url));
let children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children = [];
});

function start(env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', INSTANCE], {
    env: { ...process.env, PORT: '0', WORKER_CONCURRENCY: '4', TASK_MS: '10', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return child;
}

const lines = (path: string, kind: 'start' | 'end'): string[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith(`${kind} `))
        .map((l) => l.split(' ')[1] ?? '')
    : [];

it('SIGTERM mid-load, then a restart: every task runs exactly once and the process exits 0', async () => {
  const temp = tempDir();
  try {
    const env = { DATABASE_URL: `file:${temp.path('s.db')}`, LOG: temp.path('tasks.log') };
    const first = start(env);
    const url = await listeningUrl(first);
    const run = async (query: string) => expect((await send('http', url, { query })).code).toBe('OK');
    await run('mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
    for (let s = 0; s < 8; s++) {
      await run(`mutation{upsertSession(id:"s${s}",peers:[{peerId:"p${s}"}]){id}}`);
      const batch = Array.from({ length: 50 }, (_, i) => `{peerId:"p${s}",content:"m${i}"}`).join(',');
      await run(`mutation{addMessages(sessionId:"s${s}",messages:[${batch}]){enqueuedTasks}}`);
    }
    await expect.poll(() => lines(env.LOG, 'end').length, { interval: 5 }).toBeGreaterThan(60);
    first.kill('SIGTERM');
    const [code] = await once(first, 'exit');
    expect(code).toBe(0);
    const started = lines(env.LOG, 'start');
    expect(lines(env.LOG, 'end').sort()).toEqual([...started].sort()); // nothing cut short
    expect(started.length).toBeLessThan(400); // stopped mid-load

    const second = start(env);
    const again = await listeningUrl(second);
    await expect.poll(async () => (await statusOf(again)).completedWorkUnits, { timeout: 30_000 }).toBe(400);
    const all = lines(env.LOG, 'start');
    expect(all.length).toBe(400);
    expect(new Set(all).size).toBe(400);
    expect(lines(env.LOG, 'end').length).toBe(400);
    second.kill('SIGTERM');
    expect((await once(second, 'exit'))[0]).toBe(0);
  } finally {
    temp.remove();
  }
});
