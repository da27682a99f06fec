/**
 * Throughput of one status filter (tasks completed per second) and from it an estimate of the time
 * until nothing is pending or running.
 *
 * ## How the rate is kept
 * An exponentially decaying count of completions (time constant `TAU_MS`): each completion adds
 * one, and the sum decays by e^(-dt/tau). Three numbers per filter, whatever the rate, so every
 * roll-up can carry one. Divided by tau and corrected for how long completions have been coming
 * (`since`), it reads as "completions per second lately": a burst that began 3 s ago is not
 * diluted over the whole time constant.
 *
 * ## States
 * `idle` (no state, or no completion for `STALE_MS`: rate 0) -> `measuring` (a completion starts
 * it: `since` is that moment) -> back to `idle` after `STALE_MS` without completions. The rate is
 * read at whole seconds (`now` rounded down), so it changes at most once a second and a query and a
 * subscription event in the same second agree. The clock is passed in (tests drive it).
 */

/** Time constant of the decaying count. */
export const TAU_MS = 10_000;
/** Without completions for this long, the rate is 0. */
export const STALE_MS = 3 * TAU_MS;

/** Throughput and time to idle for a filter. */
export interface Progress {
  /** Tasks completed per second lately (a decaying average with a 10 s time constant). */
  readonly throughputPerSecond: number;
  /**
   * Seconds until nothing is pending or running at that rate: 0 when idle, `null` while work
   * remains and nothing completed lately (no estimate).
   */
  readonly estimatedSecondsToIdle: number | null;
}

/** The decaying completion count of one filter. */
export interface RateState {
  /** Decayed count at `at`. */
  value: number;
  /** Last completion (epoch ms). */
  at: number;
  /** First completion since the rate was last idle (epoch ms). */
  since: number;
}

/** Counts `count` completions at `nowMs` into `state` (a new one when absent or stale). */
export function recordCompletions(state: RateState | undefined, count: number, nowMs: number): RateState {
  if (!state || nowMs - state.at > STALE_MS) return { value: count, at: nowMs, since: nowMs };
  state.value = state.value * Math.exp(-(nowMs - state.at) / TAU_MS) + count;
  state.at = Math.max(state.at, nowMs);
  return state;
}

/** Completions per second at `nowMs` (read at the whole second), to 2 significant digits. */
export function ratePerSecond(state: RateState | undefined, nowMs: number): number {
  const now = Math.floor(nowMs / 1000) * 1000;
  if (!state || now - state.at > STALE_MS) return 0;
  const decayed = state.value * Math.exp(-Math.max(0, now - state.at) / TAU_MS);
  const measured = Math.max(1000, now - state.since);
  const rate = decayed / (TAU_MS / 1000) / (1 - Math.exp(-measured / TAU_MS));
  return rate >= 10 ? Math.round(rate) : Math.round(rate * 10) / 10;
}

/** Progress from the tasks left and a rate. */
export function progressOf(remaining: number, perSecond: number): Progress {
  if (remaining === 0) return { throughputPerSecond: perSecond, estimatedSecondsToIdle: 0 };
  return {
    throughputPerSecond: perSecond,
    estimatedSecondsToIdle: perSecond > 0 ? Math.ceil(remaining / perSecond) : null,
  };
}
