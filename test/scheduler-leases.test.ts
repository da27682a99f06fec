/**
 * A lease renewal answered after its unit was released and claimed again says nothing about the new
 * claim: the scheduler must not abort the new claim's running task (before, it looked the lost lease
 * up by unit id alone, and a task ran twice under load).
 */
import { afterEach, expect, it } from 'vitest';
import type { Lease } from '../src/store/store.ts';
import { createHarness, deferred, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it('a late answer about an old lease of a unit does not touch its new claim', async () => {
  h = await createHarness();
  await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
  await sendMessages(h.deriver, { sessionId: 's', peerId: 'a', count: 2 });

  // The first renewal is held until the unit has been claimed again; it then reports the old lease lost.
  const renewing = deferred();
  const answer = deferred();
  const answered = deferred<Lease[]>();
  const renew = h.store.renewLeases.bind(h.store);
  let renewals = 0;
  h.store.renewLeases = async (request) => {
    if (++renewals > 1) return renew(request);
    renewing.resolve();
    await answer.promise;
    const lost = await renew(request);
    answered.resolve(lost);
    return lost;
  };
  const aborts: unknown[] = [];
  const runs: number[] = [];
  const scheduler = h.startScheduler({
    concurrency: 1,
    claimBudget: 1, // a unit is released after each task and claimed again
    heartbeatMs: 5,
    handlers: {
      representation: async ({ task, signal }) => {
        runs.push(task.payload.seq);
        signal.addEventListener('abort', () => aborts.push(signal.reason));
        if (task.payload.seq === 1)
          await renewing.promise; // a renewal of this claim is in flight
        else await answered.promise; // the second claim runs while the late answer arrives
        await new Promise((resolve) => setImmediate(resolve));
      },
      summary: unexpectedSummary,
    },
  });
  scheduler.events.on('unit:claimed', ({ lease }) => {
    if (lease.token === 2) answer.resolve();
  });
  await h.idle();
  expect(await answered.promise).toHaveLength(1); // the store did say the first lease was lost ...
  expect(aborts).toEqual([]); // ... and the second claim's task was not aborted for it
  expect(runs).toEqual([1, 2]);
});
