/**
 * Throughput in live views: a subscriber that selected it is pushed its decay (time alone moves
 * it), one that selected only counts never gets an event whose counts did not change.
 */
import { afterEach, expect, it } from 'vitest';
import { createLiveStatus, type LiveStatus } from '../src/live/live-status.ts';
import type { StatusView } from '../src/live/status-view.ts';
import { STALE_MS } from '../src/status/completion-rate.ts';
import { createStatusEngine } from '../src/status/status-engine.ts';
import { createHarness, type Harness, sendMessages } from './helpers.ts';

let h: Harness | undefined;
let live: LiveStatus | undefined;
afterEach(async () => {
  live?.close();
  await h?.close();
});

/** Collects a stream's views until it is closed. */
function collect(stream: AsyncIterableIterator<StatusView>): StatusView[] {
  const views: StatusView[] = [];
  void (async () => {
    for await (const view of stream) views.push(view);
  })();
  return views;
}

it('pushes the throughput as it decays to subscribers that selected it, and nothing to the others', async () => {
  h = await createHarness();
  let now = Date.now();
  const status = createStatusEngine({ store: h.store, feed: h.feed, clock: () => now });
  live = createLiveStatus({ status, windowMs: 0, progressIntervalMs: 10 });
  await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'alice' }] });
  const filter = { workspaceId: 'default' };
  const withRate = collect(await live.subscribe(filter, { withProgress: true }));
  const countsOnly = collect(await live.subscribe(filter));

  await sendMessages(h.deriver, { sessionId: 's', peerId: 'alice', count: 5 });
  h.startScheduler({ handlers: { representation: () => {}, summary: () => {} } });
  await expect.poll(async () => (await status.get(filter)).completedWorkUnits).toBe(5);
  await expect.poll(() => withRate.at(-1)?.counts.completedWorkUnits).toBe(5);
  expect(withRate.at(-1)?.progress?.throughputPerSecond).toBeGreaterThan(0);
  const countEvents = countsOnly.length;

  now += STALE_MS + 1_000; // time alone: no completion for longer than the rate remembers
  await expect.poll(() => withRate.at(-1)?.progress?.throughputPerSecond).toBe(0);
  expect(withRate.at(-1)?.progress?.estimatedSecondsToIdle).toBe(0);
  // The timer tick that published the decayed rate would have woken the counts-only topic too.
  expect(countsOnly.length).toBe(countEvents);
  for (let i = 1; i < countsOnly.length; i++) {
    expect(countsOnly[i]?.counts, `event ${i}`).not.toEqual(countsOnly[i - 1]?.counts);
  }
});
