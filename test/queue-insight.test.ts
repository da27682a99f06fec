/**
 * Inside the queue (SPEC section 11), on every store: retry counts, work units, failed tasks, and
 * the retry and cancel admin changes, each checked against a recount of the raw task rows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { CANCELLED_ERROR, type WorkUnitInfo } from '../src/store/store.ts';
import { createHarness, deferred, type Harness, recount, sendMessages } from './helpers.ts';
import { STORES } from './support/stores.ts';

async function expectExact(h: Harness): Promise<void> {
  expect(await h.status.get({ workspaceId: 'default' })).toEqual(recount(await h.store.listTasks()));
}

describe.each(STORES)('inside the queue ($name)', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  /** Sessions s0..s(n-1), alice alone in each (one representation unit per session). */
  async function setup(sessions: number, messagesEach: number): Promise<void> {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    for (let i = 0; i < sessions; i++) {
      await h.deriver.upsertSession({ id: `s${i}`, peers: [{ peerId: 'alice' }] });
      await sendMessages(h.deriver, { sessionId: `s${i}`, peerId: 'alice', count: messagesEach });
    }
  }

  const all = { workspaceId: 'default' };
  const fast = { pollMs: 10, retryBaseMs: 1, retryMaxMs: 2 };

  it('lists the workspaces that have work, by id, up to a limit', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'no-work-here' });
    for (const workspaceId of ['zeta', 'alpha', 'mid']) {
      await h.deriver.upsertSession({ workspaceId, id: 's', peers: [{ peerId: 'alice' }] });
      await sendMessages(h.deriver, { workspaceId, sessionId: 's', peerId: 'alice', count: 1 });
    }
    expect(await h.store.listWorkspaces(10)).toEqual(['alpha', 'mid', 'zeta']);
    expect(await h.store.listWorkspaces(2)).toEqual(['alpha', 'mid']);
  });

  it('counts a task waiting for its retry apart from tasks never started, and shows when it runs again', async () => {
    await setup(1, 2);
    const failedOnce = deferred();
    h.startScheduler({
      ...fast,
      retryBaseMs: 60_000,
      retryMaxMs: 60_000,
      handlers: {
        representation: ({ task }) => {
          failedOnce.resolve();
          throw new Error(`model timeout on seq ${task.payload.seq}`);
        },
        summary: () => {},
      },
    });
    await failedOnce.promise;
    await h.scheduler?.stop();
    expect(await h.status.get(all)).toMatchObject({ pendingWorkUnits: 2, retryingWorkUnits: 1 });
    await expectExact(h);
    const [unit] = await h.store.listWorkUnits(all, { afterId: null, limit: 10, includeIdle: false });
    expect(unit).toMatchObject({
      counters: { pending: 2, running: 0, retrying: 1 },
      lastError: 'model timeout on seq 1',
      running: null,
    });
    expect(unit?.retryAt).toBeGreaterThan(Date.now() + 20_000);
    expect(unit?.oldestPendingAt).toBeGreaterThan(0);
  });

  it('counts the units a list would show on every page, up to a bound, with the same filter', async () => {
    await setup(7, 1);
    const count = (filter: Parameters<typeof h.store.countWorkUnits>[0], includeIdle: boolean, upTo = 100) =>
      h.store.countWorkUnits(filter, { includeIdle, upTo });
    expect(await count(all, false)).toBe(7);
    expect(await count(all, false, 5)).toBe(5); // bounded: it stops counting there
    expect(await count({ ...all, sessionId: 's3' }, false)).toBe(1);
    expect(await count({ ...all, taskType: 'summary' }, false)).toBe(0);
    expect(await count({ workspaceId: 'nobody' }, true)).toBe(0);
    h.startScheduler({ ...fast, handlers: { representation: () => {}, summary: () => {} } });
    await h.idle();
    expect(await count(all, false)).toBe(0);
    expect(await count(all, true)).toBe(7);
    const listed = await h.store.listWorkUnits(all, { afterId: null, limit: 100, includeIdle: true });
    expect(listed).toHaveLength(7);
  });

  it('lists the running task with its attempt and start, and the oldest pending task', async () => {
    await setup(1, 3);
    const started = deferred();
    const release = deferred();
    h.startScheduler({
      ...fast,
      claimBudget: 1,
      handlers: {
        representation: async ({ attempt }) => {
          if (attempt === 1) throw new Error('first attempt fails');
          started.resolve();
          await release.promise;
        },
        summary: () => {},
      },
    });
    await started.promise;
    const [unit] = await h.store.listWorkUnits(all, { afterId: null, limit: 10, includeIdle: false });
    const rows = await h.store.listTasks();
    expect(unit?.running).toEqual({
      taskId: rows[0]?.id,
      attempt: 2,
      startedAt: expect.any(Number),
    });
    expect(unit).toMatchObject({ counters: { pending: 2, running: 1, retrying: 0 }, retryAt: null });
    release.resolve();
    await h.idle();
    expect(await h.store.listWorkUnits(all, { afterId: null, limit: 10, includeIdle: false })).toEqual([]);
    const [idle] = await h.store.listWorkUnits(all, { afterId: null, limit: 10, includeIdle: true });
    expect(idle).toMatchObject({ oldestPendingAt: null, running: null, lastError: 'first attempt fails' });
  });

  it('lists failed tasks with error and attempts, and retries them: counts exact, changes announced, tasks run again', async () => {
    await setup(3, 4);
    let broken = true;
    const handler: TaskHandler = ({ task }) => {
      if (broken && task.payload.seq % 2 === 0)
        throw new PermanentTaskError(`cannot parse seq ${task.payload.seq}`);
    };
    h.startScheduler({ ...fast, handlers: { representation: handler, summary: handler } });
    await h.idle();
    expect(await h.status.get(all)).toMatchObject({ totalWorkUnits: 12, failedWorkUnits: 6 });
    const failed = await h.store.listFailedTasks(all, { afterId: null, limit: 4 });
    expect(failed.map((f) => [f.key.sessionId, f.payload.seq, f.error, f.attempts])).toEqual([
      ['s0', 2, 'cannot parse seq 2', 1],
      ['s0', 4, 'cannot parse seq 4', 1],
      ['s1', 2, 'cannot parse seq 2', 1],
      ['s1', 4, 'cannot parse seq 4', 1],
    ]);
    const next = await h.store.listFailedTasks(all, { afterId: failed.at(-1)?.id ?? null, limit: 4 });
    expect(next.map((f) => [f.key.sessionId, f.payload.seq])).toEqual([
      ['s2', 2],
      ['s2', 4],
    ]);
    expect(
      await h.store.listFailedTasks({ ...all, sessionId: 's1' }, { afterId: null, limit: 10 }),
    ).toHaveLength(2);

    // Retry one task by id, then a whole session: the tasks go back in line and run again.
    await h.scheduler?.stop();
    const announced: number[] = [];
    h.feed.events.on('changes', (changes) => void announced.push(...changes.units.map((u) => u.unitId)));
    broken = false;
    expect(await h.store.retryFailedTasks(all, [failed[0]?.id ?? -1])).toBe(1);
    expect(await h.status.get(all)).toMatchObject({
      totalWorkUnits: 12,
      failedWorkUnits: 5,
      pendingWorkUnits: 1,
    });
    await expectExact(h);
    expect(await h.store.retryFailedTasks({ ...all, sessionId: 's1' })).toBe(2);
    expect(await h.store.retryFailedTasks({ ...all, sessionId: 's1' })).toBe(0);
    await h.feed.sync(); // every change committed so far has been heard
    expect(announced).toHaveLength(2);
    await expectExact(h);
    h.startScheduler({ ...fast, handlers: { representation: handler, summary: handler } });
    await h.idle();
    expect(await h.status.get(all)).toMatchObject({
      totalWorkUnits: 12,
      completedWorkUnits: 12,
      failedWorkUnits: 3,
    });
    await expectExact(h);
    const retried = (await h.store.listTasks()).filter(
      (r) => r.state === 'succeeded' && r.lastError !== null,
    );
    expect(retried.map((r) => [r.key.sessionId, r.payload.seq])).toEqual([
      ['s0', 2],
      ['s1', 2],
      ['s1', 4],
    ]);
  });

  it('cancels pending tasks of idle units at once, and of a held unit all but those its worker holds', async () => {
    await setup(2, 6);
    const holding = deferred();
    const release = deferred();
    const ran: string[] = [];
    h.startScheduler({
      ...fast,
      concurrency: 1,
      claimBudget: 3,
      handlers: {
        representation: async ({ task }) => {
          ran.push(`${task.key.sessionId}#${task.payload.seq}`);
          if (ran.length === 1) {
            holding.resolve();
            await release.promise;
          }
        },
        summary: () => {},
      },
    });
    await holding.promise;
    // s0's unit is held (its worker has seq 1..3), s1's unit waits.
    const result = await h.store.cancelPendingTasks(all);
    expect(result).toEqual({ cancelled: 3 + 6, leftWithWorkers: 2 });
    expect(await h.status.get(all)).toMatchObject({
      totalWorkUnits: 12,
      inProgressWorkUnits: 1,
      pendingWorkUnits: 2,
      failedWorkUnits: 9,
    });
    await expectExact(h);
    release.resolve();
    await h.idle();
    expect(ran).toEqual(['s0#1', 's0#2', 's0#3']);
    expect(await h.status.get(all)).toMatchObject({ completedWorkUnits: 12, failedWorkUnits: 9 });
    await expectExact(h);
    const cancelled = await h.store.listFailedTasks(all, { afterId: null, limit: 100 });
    expect(cancelled.every((t) => t.error === CANCELLED_ERROR && t.attempts === 0)).toBe(true);

    // Cancelled tasks can be retried like any failed one.
    expect(await h.store.retryFailedTasks({ ...all, sessionId: 's1' })).toBe(6);
    await h.idle();
    expect(ran.slice(3)).toEqual(['s1#1', 's1#2', 's1#3', 's1#4', 's1#5', 's1#6']);
    expect(await h.store.cancelPendingTasks(all)).toEqual({ cancelled: 0, leftWithWorkers: 0 });
    await expectExact(h);
  });

  it('pages work units by a stable cursor while tasks run and new units appear: each unit once', async () => {
    await setup(12, 3);
    const before = await h.store.listWorkUnits(all, { afterId: null, limit: 100, includeIdle: true });
    expect(before).toHaveLength(12);
    h.startScheduler({ ...fast, concurrency: 4, handlers: { representation: () => {}, summary: () => {} } });
    const seen: WorkUnitInfo[] = [];
    let afterId: number | null = null;
    for (let page = 0; page < 20; page++) {
      const units = await h.store.listWorkUnits(all, { afterId, limit: 5, includeIdle: true });
      seen.push(...units);
      if (units.length < 5) break;
      afterId = units.at(-1)?.id ?? null;
      // Changes between pages: a new session (a new unit) and more work for an old one.
      await h.deriver.upsertSession({ id: `late${page}`, peers: [{ peerId: 'alice' }] });
      await sendMessages(h.deriver, { sessionId: `late${page}`, peerId: 'alice', count: 1 });
      await sendMessages(h.deriver, { sessionId: 's0', peerId: 'alice', count: 1 });
    }
    const ids = seen.map((u) => u.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const unit of before) expect(ids).toContain(unit.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // Filters narrow the same way status does.
    expect(
      (
        await h.store.listWorkUnits(
          { ...all, sessionId: 's3' },
          { afterId: null, limit: 5, includeIdle: true },
        )
      ).map((u) => u.key.sessionId),
    ).toEqual(['s3']);
    expect(
      await h.store.listWorkUnits(
        { ...all, taskType: 'summary' },
        { afterId: null, limit: 5, includeIdle: true },
      ),
    ).toEqual([]);
  });
});
