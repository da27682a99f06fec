/**
 * Real processes on one PostgreSQL database: two API+worker instances (A, B) and a worker-only one
 * (C), each `startApp` in its own OS process (`fixtures/instance.ts`). 5,000 messages across 50
 * sessions go in through B; every task runs once per unit at a time and in order across processes;
 * a subscriber on A ends on the exact final status, which A and B answer and a recount of the raw
 * rows confirms. Then the worker-only process is SIGKILLed mid-task: its units are recovered after
 * its leases expire, the interrupted tasks run again and nothing is lost.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { openStore } from '../src/store/open-store.ts';
import { tempDir } from './helpers.ts';
import { listeningUrl } from './support/processes.ts';
import { POSTGRES } from './support/stores.ts';
import { COUNTS, type Counts, send, statusOf } from './transports.ts';

const INSTANCE = fileURLToPath(new URL('./fixtures/instance.ts', import.meta.url));
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Instance {
  readonly child: ChildProcess;
  readonly url: string;
  readonly log: string;
}

async function spawnInstance(env: Record<string, string>, log: string): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', INSTANCE], {
    env: { ...process.env, PORT: '0', LOG: log, LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = await listeningUrl(child);
  return { child, url, log };
}

type Event = { kind: 'start' | 'end' | 'lost'; task: number; unit: number; at: number };
function readLogs(paths: readonly string[]): Event[] {
  return paths.flatMap((path) =>
    existsSync(path)
      ? readFileSync(path, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => {
            const [kind, task, unit, at] = line.split(' ');
            return { kind: kind as Event['kind'], task: Number(task), unit: Number(unit), at: Number(at) };
          })
      : [],
  );
}

async function addWork(url: string, sessions: number, perSession: number): Promise<void> {
  for (let s = 0; s < sessions; s++) {
    const setup = `mutation{upsertSession(id:"s${s}",peers:[{peerId:"p${s}"}],settings:{summariesEnabled:false}){id}}`;
    expect((await send('http', url, { query: setup })).code).toBe('OK');
  }
  for (let s = 0; s < sessions; s++) {
    for (let sent = 0; sent < perSession; sent += 100) {
      const messages = Array.from({ length: Math.min(100, perSession - sent) }, (_, i) => ({
        peerId: `p${s}`,
        content: `m${sent + i}`,
      }));
      const outcome = await send('http', url, {
        query: 'mutation($s:ID!,$m:[MessageInput!]!){addMessages(sessionId:$s,messages:$m){enqueuedTasks}}',
        variables: { s: `s${s}`, m: messages },
      });
      expect(outcome.code).toBe('OK');
    }
  }
}

/** Resolves with the last status pushed to a subscriber on `url` once it is idle with `total` tasks. */
function finalStatus(url: string, total: number): Promise<Counts> {
  const client = createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  cleanups.push(() => client.dispose());
  return new Promise((resolve, reject) => {
    client.subscribe<{ deriverStatus: Counts }>(
      { query: `subscription{deriverStatus(coalesceMs:50){${COUNTS}}}` },
      {
        next: (r) => {
          const s = r.data!.deriverStatus;
          if (s.totalWorkUnits === total && s.pendingWorkUnits + s.inProgressWorkUnits === 0) resolve(s);
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

/** A fresh PostgreSQL schema and a folder for the processes' logs, removed after the test. */
async function freshDatabase() {
  const location = await POSTGRES.fresh();
  cleanups.push(location.dispose);
  const temp = tempDir();
  cleanups.push(temp.remove);
  return { location, temp };
}

/**
 * A database with worker-only process C (tasks of `taskMs`, 1.5 s leases) and API-only process A,
 * and `sessions` x `perSession` messages added through A; `spawn` starts one more process there.
 */
async function workerOnlyWithWork(taskMs: number, sessions: number, perSession: number) {
  const { location, temp } = await freshDatabase();
  const env = { DATABASE_URL: location.url, LEASE_MS: '1500' };
  const c = await spawnInstance(
    { ...env, WORKER_CONCURRENCY: '4', SERVE_API: 'false', TASK_MS: String(taskMs) },
    temp.path('c.log'),
  );
  const a = await spawnInstance({ ...env, WORKER_CONCURRENCY: '0', TASK_MS: '1' }, temp.path('a.log'));
  await addWork(a.url, sessions, perSession);
  const spawn = (name: string) =>
    spawnInstance({ ...env, WORKER_CONCURRENCY: '4', TASK_MS: '1' }, temp.path(`${name}.log`));
  return { location, a, c, spawn };
}

it('three processes: order per unit across processes, exact status everywhere', {
  timeout: 120_000,
}, async () => {
  const { location, temp } = await freshDatabase();
  const env = { DATABASE_URL: location.url, TASK_MS: '1' };
  const a = await spawnInstance({ ...env, WORKER_CONCURRENCY: '4' }, temp.path('a.log'));
  const b = await spawnInstance({ ...env, WORKER_CONCURRENCY: '4' }, temp.path('b.log'));
  const c = await spawnInstance({ ...env, WORKER_CONCURRENCY: '4', SERVE_API: 'false' }, temp.path('c.log'));
  const done = finalStatus(a.url, 5_000);
  await addWork(b.url, 50, 100);
  const final = await done;
  expect(final).toEqual({
    totalWorkUnits: 5_000,
    completedWorkUnits: 5_000,
    pendingWorkUnits: 0,
    inProgressWorkUnits: 0,
  });
  expect(await statusOf(a.url)).toEqual(final);
  expect(await statusOf(b.url)).toEqual(final);

  const store = await openStore(location.url);
  cleanups.push(() => store.close());
  const tasks = await store.listTasks();
  expect(tasks).toHaveLength(5_000);
  expect(tasks.every((t) => t.state === 'succeeded' && t.runs === 1)).toBe(true);

  // Per unit: tasks ran one at a time, in id order, whichever process ran them.
  const events = readLogs([a.log, b.log, c.log]);
  const byUnit = new Map<number, Event[]>();
  for (const e of events) byUnit.set(e.unit, [...(byUnit.get(e.unit) ?? []), e]);
  const violations: string[] = [];
  for (const [unit, list] of byUnit) {
    const starts = list.filter((e) => e.kind === 'start').sort((x, y) => x.at - y.at);
    const ends = new Map(list.filter((e) => e.kind === 'end').map((e) => [e.task, e.at]));
    for (let i = 1; i < starts.length; i++) {
      const prev = starts[i - 1]!;
      const cur = starts[i]!;
      if (cur.task <= prev.task) violations.push(`unit ${unit}: task ${cur.task} started after ${prev.task}`);
      if ((ends.get(prev.task) ?? Number.POSITIVE_INFINITY) > cur.at) {
        violations.push(`unit ${unit}: task ${cur.task} started before ${prev.task} ended`);
      }
    }
  }
  expect(violations).toEqual([]);
  expect(byUnit.size).toBe(50);
  const ranBy = [a.log, b.log, c.log].map((log) => readLogs([log]).filter((e) => e.kind === 'end').length);
  expect(ranBy.reduce((x, y) => x + y, 0)).toBe(5_000);
  expect(ranBy[2]).toBeGreaterThan(0); // the worker-only process took part
});

it('a SIGKILLed worker-only process: its units are recovered after the lease, nothing is lost', {
  timeout: 120_000,
}, async () => {
  // C only at first, slow tasks: it holds leases when it dies.
  const { location, a, c, spawn: spawnMore } = await workerOnlyWithWork(50, 8, 20);
  await expect
    .poll(() => readLogs([c.log]).filter((e) => e.kind === 'end').length, { timeout: 20_000 })
    .toBeGreaterThan(10);
  c.child.kill('SIGKILL');
  await new Promise((resolve) => c.child.once('exit', resolve));
  const interrupted = (() => {
    const events = readLogs([c.log]);
    const ended = new Set(events.filter((e) => e.kind === 'end').map((e) => e.task));
    return events.filter((e) => e.kind === 'start' && !ended.has(e.task)).map((e) => e.task);
  })();
  expect(interrupted.length).toBeGreaterThan(0);
  // A worker comes up; it can take the dead process's units only once their leases expire.
  const done = finalStatus(a.url, 160);
  const b = await spawnMore('b');
  const final = await done;
  expect(final).toMatchObject({ totalWorkUnits: 160, completedWorkUnits: 160, pendingWorkUnits: 0 });
  const store = await openStore(location.url);
  cleanups.push(() => store.close());
  const tasks = await store.listTasks();
  expect(tasks.every((t) => t.state === 'succeeded')).toBe(true);
  const rerun = new Set(
    readLogs([b.log])
      .filter((e) => e.kind === 'end')
      .map((e) => e.task),
  );
  for (const task of interrupted) expect(rerun.has(task)).toBe(true);
  expect(await statusOf(b.url)).toEqual(final);
});

it('a worker-only process paused past its leases: others finish its units, its late reports are refused', {
  timeout: 120_000,
}, async () => {
  const { location, a, c, spawn: spawnMore } = await workerOnlyWithWork(300, 4, 10);
  await expect
    .poll(() => readLogs([c.log]).filter((e) => e.kind === 'start').length, { timeout: 20_000 })
    .toBeGreaterThan(0);
  c.child.kill('SIGSTOP'); // mid-task: it holds leases it cannot renew
  const done = finalStatus(a.url, 40);
  const b = await spawnMore('b');
  const final = await done;
  expect(final).toMatchObject({ totalWorkUnits: 40, completedWorkUnits: 40, pendingWorkUnits: 0 });
  // C wakes up, finishes (or aborts) what it was running and reports under leases that were taken
  // over: the store refuses each report, and C lets each of those units go.
  const events = readLogs([c.log]);
  const ended = new Set(events.filter((e) => e.kind === 'end').map((e) => e.task));
  const stalled = events.filter((e) => e.kind === 'start' && !ended.has(e.task)).map((e) => e.unit);
  expect(stalled.length).toBeGreaterThan(0);
  c.child.kill('SIGCONT');
  await expect
    .poll(() => {
      const lost = new Set(readLogs([c.log]).flatMap((e) => (e.kind === 'lost' ? [e.unit] : [])));
      return stalled.filter((unit) => !lost.has(unit));
    })
    .toEqual([]);
  const store = await openStore(location.url);
  cleanups.push(() => store.close());
  const tasks = await store.listTasks();
  expect(tasks.every((t) => t.state === 'succeeded')).toBe(true);
  expect(await statusOf(a.url)).toEqual(final); // no task counted twice
  expect(await statusOf(b.url)).toEqual(final);
});

it('an API-only process says that no worker is running, hears a worker process start, and hears it die', {
  timeout: 120_000,
}, async () => {
  const { location, temp } = await freshDatabase();
  const env = { DATABASE_URL: location.url, TASK_MS: '1' };
  const a = await spawnInstance({ ...env, WORKER_CONCURRENCY: '0' }, temp.path('a.log'));
  const seen: (number | null)[] = [];
  const client = createClient({
    url: a.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  cleanups.push(() => client.dispose());
  client.subscribe<{ deriverStatus: { workerProcesses: number | null } }>(
    { query: 'subscription{deriverStatus{workerProcesses}}' },
    {
      next: (r) => seen.push(r.data?.deriverStatus.workerProcesses ?? null),
      error: () => {},
      complete: () => {},
    },
  );
  await expect.poll(() => seen.at(-1)).toBe(0);
  // Another API-only process is not a worker; a worker-only one is, and so is the next.
  await spawnInstance({ ...env, WORKER_CONCURRENCY: '0' }, temp.path('b.log'));
  const w = await spawnInstance({ ...env, WORKER_CONCURRENCY: '2', SERVE_API: 'false' }, temp.path('w.log'));
  await expect.poll(() => seen.at(-1)).toBe(1);
  const x = await spawnInstance({ ...env, WORKER_CONCURRENCY: '2' }, temp.path('x.log'));
  await expect.poll(() => seen.at(-1)).toBe(2);
  expect(await send('http', x.url, { query: '{deriverStatus{workerProcesses}}' })).toMatchObject({
    code: 'OK',
    data: { deriverStatus: { workerProcesses: 2 } },
  });
  // Killed without a word: its connection ends with it, and every process hears it.
  for (const dead of [w, x]) {
    dead.child.kill('SIGKILL');
    await new Promise((resolve) => dead.child.once('exit', resolve));
  }
  await expect.poll(() => seen.at(-1)).toBe(0);
  expect(seen.filter((n, i) => i > 0 && n === seen[i - 1])).toEqual([]); // one event per change
});
