import { afterEach, describe, expect, it } from 'vitest';
import { PermanentTaskError, TaskTimeoutError } from '../src/errors.ts';
import type { SchedulerEvents } from '../src/scheduler/events.ts';
import { retryDelay, type SchedulerOptions } from '../src/scheduler/options.ts';
import { createHarness, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';
import { STORES } from './support/stores.ts';

describe.each(STORES)('scheduler-failures ($name)', (backend) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
  });

  async function oneUnit(count: number) {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    await sendMessages(h.deriver, { sessionId: 's', peerId: 'a', count });
    return h;
  }

  const fast = { retryBaseMs: 5, retryMaxMs: 20, pollMs: 10 };

  describe('retries', () => {
    it('retries a failing task with backoff, keeps unit order meanwhile, and counts it once when it succeeds', async () => {
      const harness = await oneUnit(2);
      const log: string[] = [];
      const retrying: SchedulerEvents['task:retrying'][] = [];
      const idle = harness.idle();
      const scheduler = harness.startScheduler({
        ...fast,
        maxAttempts: 5,
        handlers: {
          representation: ({ task, attempt }) => {
            log.push(`${task.payload.seq}@${attempt}`);
            if (task.payload.seq === 1 && attempt < 3) throw new Error(`flaky ${attempt}`);
          },
          summary: unexpectedSummary,
        },
      });
      const retried = new Promise<void>((resolve) =>
        scheduler.events.on('task:retrying', (e) => {
          if (retrying.push(e) === 2) resolve();
        }),
      );
      await Promise.all([idle, retried]);
      expect(log).toEqual(['1@1', '1@2', '1@3', '2@1']);
      expect(retrying.map((e) => [e.attempt, e.error])).toEqual([
        [1, 'flaky 1'],
        [2, 'flaky 2'],
      ]);
      const [first] = await harness.store.listTasks();
      expect(first).toMatchObject({ state: 'succeeded', runs: 3, failures: 2, lastError: 'flaky 2' });
      expect(await harness.status.get({ workspaceId: 'default' })).toMatchObject({
        totalWorkUnits: 2,
        completedWorkUnits: 2,
        failedWorkUnits: 0,
      });
    });

    it('fails a task for good after maxAttempts, keeps its error, and moves on to the next task', async () => {
      const harness = await oneUnit(2);
      const failed: SchedulerEvents['task:failed'][] = [];
      const idle = harness.idle();
      const scheduler = harness.startScheduler({
        ...fast,
        maxAttempts: 3,
        handlers: {
          representation: ({ task }) => {
            if (task.payload.seq === 1) throw new Error('always broken');
          },
          summary: unexpectedSummary,
        },
      });
      const reported = new Promise<void>((resolve) =>
        scheduler.events.on('task:failed', (e) => {
          failed.push(e);
          resolve();
        }),
      );
      await Promise.all([idle, reported]);
      expect(failed.map((e) => [e.attempts, e.error])).toEqual([[3, 'always broken']]);
      const tasks = await harness.store.listTasks();
      expect(tasks.map((t) => [t.state, t.runs, t.failures, t.lastError])).toEqual([
        ['failed', 3, 3, 'always broken'],
        ['succeeded', 1, 0, null],
      ]);
      expect(await harness.status.get({ workspaceId: 'default' })).toEqual({
        totalWorkUnits: 2,
        completedWorkUnits: 2,
        inProgressWorkUnits: 0,
        pendingWorkUnits: 0,
        failedWorkUnits: 1,
        retryingWorkUnits: 0,
      });
    });

    it('fails a task at once on a permanent error', async () => {
      const harness = await oneUnit(1);
      const idle = harness.idle();
      harness.startScheduler({
        ...fast,
        handlers: {
          representation: () => {
            throw new PermanentTaskError('bad payload');
          },
          summary: unexpectedSummary,
        },
      });
      await idle;
      expect(await harness.store.listTasks()).toMatchObject([
        { state: 'failed', runs: 1, lastError: 'bad payload' },
      ]);
    });

    it('refuses to start without a handler for every task type, naming the missing one', async () => {
      const harness = await oneUnit(1);
      const handlers = { representation: () => {} } as unknown as SchedulerOptions['handlers'];
      expect(() => harness.startScheduler({ ...fast, handlers })).toThrow(
        expect.objectContaining({
          code: 'BAD_USER_INPUT',
          issues: [
            {
              path: ['handlers', 'summary'],
              message:
                'no handler for task type "summary": give one handler per task type (representation, summary)',
            },
          ],
        }),
      );
      // An API-only scheduler runs no task and needs none.
      expect(() => harness.startScheduler({ ...fast, concurrency: 0, handlers })).not.toThrow();
    });

    it('aborts an attempt that outlives its timeout through the AbortSignal and counts a failed attempt', async () => {
      const harness = await oneUnit(1);
      const reasons: unknown[] = [];
      const idle = harness.idle();
      harness.startScheduler({
        ...fast,
        maxAttempts: 2,
        timeoutMs: 30,
        handlers: {
          representation: ({ signal, attempt }) =>
            new Promise<void>((resolve, reject) => {
              if (attempt === 2) return resolve();
              signal.addEventListener('abort', () => {
                reasons.push(signal.reason);
                reject(signal.reason);
              });
            }),
          summary: unexpectedSummary,
        },
      });
      await idle;
      expect(reasons).toHaveLength(1);
      expect(reasons[0]).toBeInstanceOf(TaskTimeoutError);
      expect(await harness.store.listTasks()).toMatchObject([
        { state: 'succeeded', runs: 2, failures: 1, lastError: 'task attempt timed out after 30 ms' },
      ]);
    });

    it('times out each call of a unit from its own start, the first ones quick, the later ones hanging', async () => {
      const harness = await oneUnit(4);
      const timedOut: number[] = [];
      const idle = harness.idle();
      harness.startScheduler({
        ...fast,
        maxAttempts: 1,
        timeoutMs: 30,
        handlers: {
          // The first two end at once; the last two wait until their deadline aborts them.
          representation: ({ task, signal }) =>
            task.messages[0]?.seq === 1 || task.messages[0]?.seq === 2
              ? undefined
              : new Promise<void>((_, reject) => {
                  signal.addEventListener('abort', () => {
                    if (signal.reason instanceof TaskTimeoutError) timedOut.push(task.messages[0]?.seq ?? 0);
                    reject(signal.reason);
                  });
                }),
          summary: unexpectedSummary,
        },
      });
      await idle;
      expect(timedOut).toEqual([3, 4]);
      expect((await harness.store.listTasks()).map((t) => t.state)).toEqual([
        'succeeded',
        'succeeded',
        'failed',
        'failed',
      ]);
    });

    it('keeps going when an event listener throws', async () => {
      const harness = await oneUnit(3);
      const idle = harness.idle();
      const scheduler = harness.startScheduler({
        ...fast,
        handlers: { representation: () => {}, summary: unexpectedSummary },
      });
      const reported: string[] = [];
      scheduler.events.on(
        'error',
        ({ error, operation }) => void reported.push(`${operation}: ${error.message}`),
      );
      scheduler.events.on('task:completed', () => {
        throw new Error('listener bug');
      });
      await idle;
      expect(await harness.store.listTasks({ state: 'succeeded' })).toHaveLength(3);
      await expect.poll(() => reported.length).toBe(3);
      expect(reported[0]).toBe('listener for task:completed: listener bug');
    });
  });

  describe('retryDelay', () => {
    it('doubles from the base, caps at the maximum, and jitters within the upper half', () => {
      expect([1, 2, 3, 4, 10].map((n) => retryDelay(n, 100, 1_000, () => 0))).toEqual([
        50, 100, 200, 400, 500,
      ]);
      expect([1, 2, 3, 4, 10].map((n) => retryDelay(n, 100, 1_000, () => 0.999_999))).toEqual([
        100, 200, 400, 800, 1_000,
      ]);
    });
  });

  describe('graceful shutdown', () => {
    it('lets running tasks finish before the deadline and releases every claim', async () => {
      const harness = await oneUnit(5);
      let finished = 0;
      const started = new Promise<void>((resolve) => {
        harness.startScheduler({
          ...fast,
          handlers: {
            representation: async () => {
              resolve();
              await new Promise((r) => setTimeout(r, 50));
              finished++;
            },
            summary: unexpectedSummary,
          },
        });
      });
      await started;
      await harness.scheduler!.stop({ deadlineMs: 5_000 });
      expect(finished).toBe(1);
      expect(harness.scheduler!.activeUnits).toBe(0);
      expect(await harness.status.get({ workspaceId: 'default' })).toMatchObject({
        completedWorkUnits: 1,
        pendingWorkUnits: 4,
        inProgressWorkUnits: 0,
      });
      // another worker can claim the unit at once: its lease was released, not left to expire
      expect(
        await harness.store.claim({
          owner: 'next',
          leaseMs: 1_000,
          max: 1,
          prefetch: 1,
          maxInterruptions: 3,
        }),
      ).toHaveLength(1);
    });

    it('aborts what is still running at the deadline and puts it back without counting a failure', async () => {
      const harness = await oneUnit(1);
      const started = new Promise<void>((resolve) => {
        harness.startScheduler({
          ...fast,
          handlers: {
            representation: ({ signal }) =>
              new Promise<void>((_, reject) => {
                resolve();
                signal.addEventListener('abort', () => reject(signal.reason));
              }),
            summary: unexpectedSummary,
          },
        });
      });
      await started;
      await harness.scheduler!.stop({ deadlineMs: 20 });
      expect(await harness.store.listTasks()).toMatchObject([{ state: 'pending', runs: 1, failures: 0 }]);
      expect(await harness.status.get({ workspaceId: 'default' })).toMatchObject({
        pendingWorkUnits: 1,
        inProgressWorkUnits: 0,
      });
    });
  });
});
