/** `coalescedRuns`: one pass at a time; requests during a pass make exactly one more. */
import { expect, it } from 'vitest';
import { coalescedRuns } from '../src/util/coalesced-runs.ts';

/** Every promise callback queued so far has run (a turn of the event loop, not a time). */
const drained = () => new Promise((resolve) => setImmediate(resolve));

/** A pass that ends when the test says so. */
function controlledPasses() {
  const ends: (() => void)[] = [];
  let started = 0;
  const pass = () =>
    new Promise<void>((resolve) => {
      started++;
      ends.push(resolve);
    });
  return { pass, ends, started: () => started };
}

it('runs one pass at a time, and a burst of requests during a pass as exactly one more', async () => {
  const passes = controlledPasses();
  const runs = coalescedRuns(passes.pass, () => {});
  runs.request();
  expect(passes.started()).toBe(1);
  runs.request();
  runs.request();
  runs.request();
  expect(passes.started()).toBe(1);
  passes.ends[0]!();
  await expect.poll(passes.started).toBe(2);
  passes.ends[1]!();
  await drained();
  expect(passes.started()).toBe(2); // nothing was asked during the second pass

  runs.request();
  expect(passes.started()).toBe(3);
  passes.ends[2]!();
  await runs.stop();
});

it('reports a failed pass and goes on; after stop nothing runs, and stop waits for the pass in flight', async () => {
  const errors: unknown[] = [];
  let calls = 0;
  const boom = new Error('boom');
  const passes = controlledPasses();
  const runs = coalescedRuns(
    async () => {
      calls++;
      if (calls === 1) throw boom;
      await passes.pass();
    },
    (error) => errors.push(error),
  );
  runs.request();
  await expect.poll(() => errors).toEqual([boom]);
  runs.request();
  expect(calls).toBe(2);
  let stopped = false;
  const stopping = runs.stop().then(() => {
    stopped = true;
  });
  runs.request();
  await drained();
  expect(stopped).toBe(false);
  passes.ends[0]!();
  await stopping;
  expect(calls).toBe(2);
});
