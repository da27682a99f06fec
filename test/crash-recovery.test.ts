import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeriver } from '../src/service/deriver.ts';
import { openStore } from '../src/store/open-store.ts';
import type { Lease, Store } from '../src/store/store.ts';
import { createHarness, type Harness, sendMessages, tempDir, unexpectedSummary } from './helpers.ts';
import { STORES } from './support/stores.ts';

const WORKER = fileURLToPath(new URL('./fixtures/crash-worker.ts', import.meta.url));

let h: Harness | undefined;
let child: ChildProcess | undefined;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  child?.kill('SIGKILL');
  await h?.close();
  h = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function readLog(path: string): { started: Map<number, number>; ended: Set<number> } {
  const started = new Map<number, number>();
  const ended = new Set<number>();
  if (!existsSync(path)) return { started, ended };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const [what, id] = line.split(' ');
    if (what === 'start') started.set(Number(id), (started.get(Number(id)) ?? 0) + 1);
    if (what === 'end') ended.add(Number(id));
  }
  return { started, ended };
}

/** Batches of 5 representation tasks, ready at once (no waiting to fill). */
const BATCHES = { representation: { maxTasks: 5, maxTokens: 1e9, maxWaitMs: 0 } };

describe.each(
  STORES.flatMap((backend) => [
    { name: backend.name, backend, batch: false },
    { name: `${backend.name}, batches`, backend, batch: true },
  ]),
)('crash recovery ($name)', ({ backend, batch }) => {
  it('finishes every task after the worker process is SIGKILLed mid-run; interrupted tasks run again, in order', async () => {
    const temp = tempDir();
    cleanups.push(temp.remove);
    const location = await backend.fresh();
    cleanups.push(location.dispose);
    const logPath = temp.path('worker.log');
    const batches = batch ? BATCHES : {};
    h = await createHarness({ storeUrl: location.url, batches });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    for (let s = 0; s < 10; s++) {
      await h.deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: `p${s}` }] });
      await sendMessages(h.deriver, { sessionId: `s${s}`, peerId: `p${s}`, count: 20 });
    }
    await h.close();
    h = undefined;

    child = spawn(process.execPath, ['--import', 'tsx', WORKER, location.url, logPath], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, BATCH_TASKS: batch ? '5' : '0' },
    });
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    // Kill it once it has finished some tasks and is in the middle of others.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        const log = readLog(logPath);
        if (log.ended.size >= 40 && log.started.size > log.ended.size) {
          clearInterval(timer);
          resolve();
        }
      }, 2);
      child!.once('exit', (code) => {
        clearInterval(timer);
        reject(new Error(`worker exited early with ${code}`));
      });
    });
    child.kill('SIGKILL');
    await exited;
    const before = readLog(logPath);
    const interrupted = [...before.started.keys()].filter((id) => !before.ended.has(id));
    expect(interrupted.length).toBeGreaterThan(0);

    h = await createHarness({ storeUrl: location.url, batches });
    const mid = await h.status.get({ workspaceId: 'default' });
    expect(mid.totalWorkUnits).toBe(200);
    expect(mid.completedWorkUnits).toBeLessThan(200);
    // Tasks the store holds as running belonged to the dead worker (their leases will expire).
    const runningAtCrash = (await h.store.listTasks({ state: 'running' })).map((t) => ({
      id: t.id,
      runs: t.runs,
    }));
    expect(runningAtCrash.length).toBeGreaterThan(0);
    // Watermarks after the crash: each session is derived up to just before its first unfinished task.
    const rowsAtCrash = await h.store.listTasks();
    for (let s = 0; s < 10; s++) {
      const open = rowsAtCrash.find(
        (t) => t.key.sessionId === `s${s}` && (t.state === 'pending' || t.state === 'running'),
      );
      expect(await h.store.derivedThroughSeq({ workspaceId: 'default', sessionId: `s${s}` })).toBe(
        open ? open.payload.seq - 1 : 20,
      );
    }
    const rerun: number[] = [];
    const callSizes: number[] = [];
    const idle = h.idle();
    h.startScheduler({
      leaseMs: 400,
      pollMs: 20,
      handlers: {
        representation: ({ tasks }) => {
          callSizes.push(tasks.length);
          rerun.push(...tasks.map((t) => t.id));
        },
        summary: unexpectedSummary,
      },
    });
    await idle;
    // A unit's tasks ran in order after the crash too (ids grow within a session's unit).
    const unitOf = new Map((await h.store.listTasks()).map((t) => [t.id, t.key.sessionId]));
    const lastBySession = new Map<string, number>();
    for (const id of rerun) {
      const session = unitOf.get(id) ?? '';
      expect(id).toBeGreaterThan(lastBySession.get(session) ?? 0);
      lastBySession.set(session, id);
    }
    if (batch) expect(Math.max(...callSizes)).toBeGreaterThan(1);

    const tasks = await h.store.listTasks();
    expect(tasks).toHaveLength(200);
    expect(tasks.every((t) => t.state === 'succeeded')).toBe(true);
    // Every task cut off mid-run runs again. (A worker starts a claimed unit's next task before
    // reporting it, so a task the store never saw start is simply still pending: it runs once more
    // and its recorded runs may be 1; a task the store saw running counts both runs.)
    for (const id of interrupted) expect(rerun).toContain(id);
    for (const { id, runs } of runningAtCrash) {
      expect(rerun).toContain(id);
      expect(tasks.find((t) => t.id === id)?.runs).toBe(runs + 1);
    }
    for (let s = 0; s < 10; s++)
      expect(await h.store.derivedThroughSeq({ workspaceId: 'default', sessionId: `s${s}` })).toBe(20);
    expect(await h.status.get({ workspaceId: 'default' })).toEqual({
      totalWorkUnits: 200,
      completedWorkUnits: 200,
      inProgressWorkUnits: 0,
      pendingWorkUnits: 0,
      failedWorkUnits: 0,
      retryingWorkUnits: 0,
    });
  });
});

describe.each(STORES)('fencing ($name)', (backend) => {
  async function twoTasks(): Promise<{ store: Store; advance: (ms: number) => void }> {
    const location = await backend.fresh();
    let now = 1_000_000;
    const store = await openStore(location.url, { clock: () => now });
    cleanups.push(async () => {
      await store.close();
      await location.dispose();
    });
    const deriver = createDeriver({ store });
    await deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    await sendMessages(deriver, { sessionId: 's', peerId: 'a', count: 2 });
    const advance = (ms: number) => {
      now += ms;
    };
    return { store, advance };
  }

  const claimBy = (store: Store, owner: string) =>
    store.claim({ owner, leaseMs: 100, max: 1, prefetch: 5, maxInterruptions: 3 });
  /** One unit report: `done` succeeded, then `running` (or nothing) runs. */
  const report = (store: Store, owner: string, lease: Lease, done: number, running: number | null) =>
    store.settle({
      owner,
      leaseMs: 100,
      max: 0,
      prefetch: 5,
      maxInterruptions: 3,
      reports: [{ lease, attempts: [{ taskId: done, outcome: { kind: 'succeeded' } }], running }],
    });

  it('refuses the completion of a lease holder whose lease expired and was claimed again', async () => {
    const { store, advance } = await twoTasks();
    const [a] = await claimBy(store, 'A');
    expect(a?.tasks.map((t) => t.payload.seq)).toEqual([1, 2]);
    advance(50);
    expect(await store.renewLeases({ owner: 'A', leaseMs: 100, leases: [a!.lease] })).toEqual([]);
    advance(200);
    expect(await store.renewLeases({ owner: 'A', leaseMs: 100, leases: [a!.lease] })).toEqual([a!.lease]);

    const [b] = await claimBy(store, 'B');
    expect(b?.lease.unitId).toBe(a!.lease.unitId);
    expect(b!.lease.token).toBe(a!.lease.token + 1);
    expect(b!.tasks[0]?.id).toBe(a!.tasks[0]?.id);
    expect(b!.tasks[0]?.runs).toBe(2);

    const [first, second] = a!.tasks;
    const stale = await report(store, 'A', a!.lease, first!.id, second!.id);
    expect(stale.results).toEqual([{ kind: 'lease-lost' }]);
    expect((await store.listTasks()).map((t) => t.state)).toEqual(['running', 'pending']);

    const fresh = await report(store, 'B', b!.lease, first!.id, second!.id);
    expect(fresh.results).toEqual([{ kind: 'kept' }]);
    expect((await store.listTasks()).map((t) => t.state)).toEqual(['succeeded', 'running']);
  });

  it('refuses the completion of a holder whose lease expired even before anyone else claimed', async () => {
    const { store, advance } = await twoTasks();
    const [a] = await claimBy(store, 'A');
    advance(101);
    const late = await report(store, 'A', a!.lease, a!.tasks[0]!.id, null);
    expect(late.results[0]?.kind).toBe('lease-lost');
  });

  it('rejects a report that does not fit the stored state, writing nothing', async () => {
    const { store } = await twoTasks();
    const [a] = await claimBy(store, 'A');
    const [, second] = a!.tasks;
    // the second task was never started: it cannot be the one that was running
    await expect(report(store, 'A', a!.lease, second!.id, null)).rejects.toThrow(/is not running/);
    expect((await store.listTasks()).map((t) => t.state)).toEqual(['running', 'pending']);
  });
});
