/**
 * A handler that refuses the service (`HandlerRefusedError`, what the HTTP handler throws on 401 and
 * 403): the task goes back with no attempt counted, claiming pauses, and after each pause exactly one
 * attempt probes alone; the first success ends the episode and every task then runs, none failed.
 */
import { afterEach, expect, it } from 'vitest';
import { HandlerRefusedError } from '../src/errors.ts';
import { createHarness, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it('pauses on a refusal, probes with one attempt at a time, and resumes at full width on the first success', async () => {
  h = await createHarness();
  await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  for (let i = 0; i < 6; i++) {
    await h.deriver.upsertSession({ id: `s${i}`, peers: [{ peerId: 'a' }] });
    await sendMessages(h.deriver, { sessionId: `s${i}`, peerId: 'a', count: 3 });
  }
  let refusing = true;
  let inFlight = 0;
  /** How many attempts were running at once, for each attempt refused after the first pause ended. */
  const probes: number[] = [];
  let firstPauseEnds = Number.POSITIVE_INFINITY;
  let refusals = 0;
  const scheduler = h.startScheduler({
    concurrency: 4,
    maxAttempts: 1, // a refusal that counted as an attempt would fail the task at once
    handlers: {
      representation: async () => {
        inFlight++;
        try {
          await new Promise((resolve) => setImmediate(resolve));
          if (refusing) {
            refusals++;
            if (Date.now() >= firstPauseEnds) probes.push(inFlight);
            // After the first pause and its probe, the worker is fixed.
            if (refusals >= 6) refusing = false;
            throw new HandlerRefusedError('HTTP 401: invalid signature');
          }
        } finally {
          inFlight--;
        }
      },
      summary: unexpectedSummary,
    },
  });
  const paused: unknown[] = [];
  const resumed: unknown[] = [];
  scheduler.events.on('dispatch:paused', (event) => {
    paused.push(event);
    firstPauseEnds = Math.min(firstPauseEnds, event.until);
  });
  scheduler.events.on('dispatch:resumed', (event) => {
    resumed.push(event);
  });
  await h.idle();
  const status = await h.status.get({ workspaceId: 'default' });
  expect(status).toMatchObject({ totalWorkUnits: 18, completedWorkUnits: 18, failedWorkUnits: 0 });
  expect(paused).toHaveLength(1);
  expect(resumed).toHaveLength(1);
  expect(scheduler.dispatch).toEqual({ paused: false });
  // After the first pause, every refused attempt was a probe running alone.
  expect(probes.length).toBeGreaterThanOrEqual(2);
  expect(probes.every((n) => n === 1)).toBe(true);
  const tasks = await h.store.listTasks();
  expect(tasks.every((t) => t.failures === 0)).toBe(true); // no refusal counted as a failed attempt
});
