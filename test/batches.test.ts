/**
 * Batches per work unit (docs/deriver.md, "Batches"), on both stores: a batched unit waits until
 * its batch is full by count or by tokens, or its oldest task is `maxWaitMs` old (a fake store
 * clock); the handler gets the unit's tasks in order, each exactly once; a partial answer puts the
 * rest back; a failed batch retries every task; the counts stay per task while a batch runs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskContext } from '../src/scheduler/options.ts';
import type { BatchPolicy } from '../src/store/queue-plan.ts';
import { createHarness, deferred, type Harness, unexpectedSummary } from './helpers.ts';
import { STORES } from './support/stores.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const MINUTE = 60_000;
/** The store's clock runs with the real one, `skew` ahead (a test moves it forward). */
let skew = 0;

async function setUp(backend: (typeof STORES)[number], batch: BatchPolicy): Promise<Harness> {
  skew = 0;
  h = await createHarness({ backend, clock: () => Date.now() + skew, batches: { representation: batch } });
  await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
  return h;
}

const send = (harness: Harness, contents: readonly string[]) =>
  harness.deriver.addMessages({
    sessionId: 's',
    messages: contents.map((content) => ({ peerId: 'a', content })),
  });

/** A handler that records each call's task ids, in order. */
function recorder() {
  const calls: number[][] = [];
  const handler = ({ tasks }: TaskContext) => {
    calls.push(tasks.map((t) => t.id));
  };
  return { calls, handler };
}

/** Resolves once the store has no task left pending or running. */
async function drained(harness: Harness): Promise<void> {
  await harness.idle();
}

describe.each(STORES)('batches ($name)', (backend) => {
  it('a backlog in one claim lane does not starve another: the lane that goes first turns', async () => {
    const harness = await setUp(backend, { maxTasks: 1, maxTokens: 1_000_000, maxWaitMs: 30 * MINUTE });
    await harness.deriver.upsertWorkspace({
      id: 'default',
      settings: { summariesEnabled: true, messagesPerShortSummary: 2 },
    });
    // Two sessions of two messages: each a summary unit (an unbatched lane) and a representation
    // unit (batched, full at once).
    for (const id of ['x', 'y']) {
      await harness.deriver.upsertSession({ id, peers: [{ peerId: 'a' }] });
      await harness.deriver.addMessages({
        sessionId: id,
        messages: [
          { peerId: 'a', content: 'one' },
          { peerId: 'a', content: 'two' },
        ],
      });
    }
    const types: string[] = [];
    for (let i = 0; i < 2; i++) {
      const claimed = await harness.store.claim({
        owner: 'w',
        leaseMs: MINUTE,
        max: 1,
        prefetch: 1,
        maxInterruptions: 3,
      });
      types.push(...claimed.map((u) => u.key.taskType));
    }
    // Without turns, the summary lane would take both claims while summaries are left.
    expect(types.sort()).toEqual(['representation', 'summary']);
  });

  it('a claim takes the oldest heads, whether their wait is over or they never waited; a filling unit is not taken', async () => {
    const harness = await setUp(backend, { maxTasks: 2, maxTokens: 1_000_000, maxWaitMs: 30 * MINUTE });
    await harness.deriver.upsertSession({ id: 's2', peers: [{ peerId: 'a' }] });
    const filling = (await send(harness, ['one'])).messages[0]!; // unit of session s: waits to fill
    await harness.deriver.addMessages({
      sessionId: 's2',
      messages: [
        { peerId: 'a', content: 'two' },
        { peerId: 'a', content: 'three' },
      ],
    }); // unit of session s2: full, ready at once
    const claim = () =>
      harness.store.claim({ owner: 'w', leaseMs: MINUTE, max: 1, prefetch: 1, maxInterruptions: 3 });
    const release = async (units: Awaited<ReturnType<typeof claim>>) => {
      for (const unit of units)
        await harness.store.settle({
          owner: 'w',
          leaseMs: MINUTE,
          max: 0,
          prefetch: 1,
          maxInterruptions: 3,
          reports: [
            {
              lease: unit.lease,
              attempts: unit.tasks.map((t) => ({ taskId: t.id, outcome: { kind: 'requeue' as const } })),
              running: null,
            },
          ],
        });
    };
    // Only the full one is claimable now.
    const first = await claim();
    expect(first.map((u) => u.key.sessionId)).toEqual(['s2']);
    await release(first);
    // Half an hour later (store clock) the filling unit is due: its head is the oldest, it goes first.
    skew = 31 * MINUTE;
    const second = await claim();
    expect(second.map((u) => [u.key.sessionId, u.tasks.map((t) => t.messageId)])).toEqual([
      ['s', [filling.id]],
    ]);
    const third = await claim();
    expect(third.map((u) => u.key.sessionId)).toEqual(['s2']);
  });

  it('hands a unit over once its batch is full by count, and the rest once its oldest task is maxWaitMs old', async () => {
    const harness = await setUp(backend, { maxTasks: 4, maxTokens: 1_000_000, maxWaitMs: 30 * MINUTE });
    const { calls, handler } = recorder();
    const scheduler = harness.startScheduler({
      concurrency: 2,
      pollMs: 20,
      handlers: { representation: handler, summary: unexpectedSummary },
    });
    // Three messages: not full, not old: nothing is handed over.
    await send(harness, ['one', 'two', 'three']);
    const units = await harness.store.listWorkUnits(
      { workspaceId: 'default' },
      { afterId: null, limit: 10, includeIdle: false },
    );
    expect(units).toHaveLength(1);
    expect(units[0]?.counters.pending).toBe(3);
    // The fourth fills the batch: one call with the four tasks, in order.
    const full = deferred();
    scheduler.events.on('task:completed', () => {
      if (calls.flat().length === 4) full.resolve();
    });
    await send(harness, ['four', 'five']);
    await full.promise;
    const tasks = (await harness.store.listTasks()).map((t) => t.id);
    expect(calls).toEqual([tasks.slice(0, 4)]);
    // The fifth waits for its batch to fill or age: 30 minutes later (store clock) it goes alone.
    expect((await harness.status.get({ workspaceId: 'default' })).pendingWorkUnits).toBe(1);
    skew += 30 * MINUTE;
    scheduler.wake();
    await drained(harness);
    expect(calls).toEqual([tasks.slice(0, 4), tasks.slice(4)]);
  });

  it('fills a batch by tokens and keeps each call within maxTokens', async () => {
    const harness = await setUp(backend, { maxTasks: 50, maxTokens: 100, maxWaitMs: 30 * MINUTE });
    const { calls, handler } = recorder();
    harness.startScheduler({
      concurrency: 1,
      handlers: { representation: handler, summary: unexpectedSummary },
    });
    // 200 characters: 50 tokens each (characters / 4); two make a full batch of 100 tokens.
    const long = 'x'.repeat(200);
    await send(harness, [long, long, long, long]);
    await drained(harness);
    const tasks = (await harness.store.listTasks()).map((t) => t.id);
    expect(calls).toEqual([tasks.slice(0, 2), tasks.slice(2, 4)]);
    expect((await harness.store.listTasks()).every((t) => t.state === 'succeeded')).toBe(true);
  });

  it('puts back what a partial answer did not finish, and runs it next, in order', async () => {
    const harness = await setUp(backend, { maxTasks: 3, maxTokens: 1_000_000, maxWaitMs: 0 });
    const calls: number[][] = [];
    harness.startScheduler({
      concurrency: 1,
      maxAttempts: 1,
      handlers: {
        representation: ({ tasks }) => {
          calls.push(tasks.map((t) => t.id));
          return { completed: calls.length === 1 ? 1 : tasks.length };
        },
        summary: unexpectedSummary,
      },
    });
    await send(harness, ['a', 'b', 'c', 'd']);
    await drained(harness);
    const [t1, t2, t3, t4] = (await harness.store.listTasks()).map((t) => t.id);
    expect(calls).toEqual([
      [t1, t2, t3],
      [t2, t3, t4],
    ]);
    const rows = await harness.store.listTasks();
    // Put back with no failure counted, even with one attempt allowed.
    expect(rows.map((t) => [t.state, t.failures])).toEqual([
      ['succeeded', 0],
      ['succeeded', 0],
      ['succeeded', 0],
      ['succeeded', 0],
    ]);
  });

  it('fails the attempt for every task of a failed batch, and keeps counts per task while it runs', async () => {
    const harness = await setUp(backend, { maxTasks: 3, maxTokens: 1_000_000, maxWaitMs: 0 });
    const gate = deferred();
    const running = deferred();
    let call = 0;
    harness.startScheduler({
      concurrency: 1,
      retryBaseMs: 1,
      retryMaxMs: 1,
      handlers: {
        representation: async ({ tasks, attempt }) => {
          call++;
          if (call === 1) {
            running.resolve();
            await gate.promise;
            throw new Error('model unavailable');
          }
          if (tasks.some((t) => t.messages[0]?.content === 'never'))
            throw new PermanentTaskError('bad input');
          expect(attempt).toBe(2);
        },
        summary: unexpectedSummary,
      },
    });
    await send(harness, ['a', 'b', 'c']);
    await running.promise;
    // The whole batch is in progress together, counted per task.
    expect(await harness.status.get({ workspaceId: 'default' })).toMatchObject({
      totalWorkUnits: 3,
      inProgressWorkUnits: 3,
      pendingWorkUnits: 0,
    });
    gate.resolve();
    await drained(harness);
    const rows = await harness.store.listTasks();
    expect(rows.map((t) => [t.state, t.failures])).toEqual([
      ['succeeded', 1],
      ['succeeded', 1],
      ['succeeded', 1],
    ]);
    expect(call).toBe(2);
  });
});
