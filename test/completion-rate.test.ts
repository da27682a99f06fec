import { describe, expect, it } from 'vitest';
import {
  progressOf,
  type RateState,
  ratePerSecond,
  recordCompletions,
  STALE_MS,
} from '../src/status/completion-rate.ts';

/** Completions at `perSecond` for `seconds`, one every 1/perSecond s, from `start`. */
function steady(perSecond: number, seconds: number, start = 1_000_000): { state: RateState; end: number } {
  let state: RateState | undefined;
  const step = 1000 / perSecond;
  let t = start;
  for (let i = 0; i < perSecond * seconds; i++, t += step) state = recordCompletions(state, 1, t);
  if (!state) throw new Error('no completions');
  return { state, end: t };
}

describe('completion rate', () => {
  it('reads a steady rate after a short burst without diluting it over the time constant', () => {
    const { state, end } = steady(20, 3);
    expect(ratePerSecond(state, end)).toBeGreaterThan(17);
    expect(ratePerSecond(state, end)).toBeLessThan(23);
  });

  it('follows a long steady rate closely', () => {
    const { state, end } = steady(50, 60);
    expect(Math.abs(ratePerSecond(state, end) - 50)).toBeLessThanOrEqual(3);
  });

  it('changes at most once a second: two reads in the same second agree', () => {
    const { state, end } = steady(10, 5);
    const second = Math.floor(end / 1000) * 1000;
    expect(ratePerSecond(state, second + 10)).toBe(ratePerSecond(state, second + 990));
  });

  it('decays once completions stop, and is 0 (idle) after STALE_MS', () => {
    const { state, end } = steady(10, 10);
    const at = (ms: number) => ratePerSecond(state, end + ms);
    expect(at(5_000)).toBeLessThan(at(0));
    expect(at(15_000)).toBeLessThan(at(5_000));
    expect(at(STALE_MS + 1_000)).toBe(0);
    // A completion after that starts measuring afresh.
    const fresh = recordCompletions(state, 5, end + STALE_MS + 2_000);
    expect(fresh.since).toBe(end + STALE_MS + 2_000);
  });

  it('estimates seconds to idle from what is left, with no estimate while nothing completes', () => {
    expect(progressOf(0, 0)).toEqual({ throughputPerSecond: 0, estimatedSecondsToIdle: 0 });
    expect(progressOf(100, 0)).toEqual({ throughputPerSecond: 0, estimatedSecondsToIdle: null });
    expect(progressOf(100, 30)).toEqual({ throughputPerSecond: 30, estimatedSecondsToIdle: 4 });
    expect(ratePerSecond(undefined, 5_000)).toBe(0);
  });
});
