/**
 * Rate limits of task types (docs/deriver.md, "Rate limits"): how many handler calls, and how many
 * input tokens, a task type may start per interval, and pauses a provider asked for (HTTP 429,
 * `RateLimitedError`). The rule is one pure function, `admit`; the stores keep its state: the
 * PostgreSQL store in a table, so every process on the database shares one limit, and the SQLite
 * store in this process's memory (`createLocalRateLimits`).
 *
 * ## The rule
 * Calls are paced, not burst: a type limited to `requests` per `intervalMs` starts a call at most
 * every `intervalMs / requests`, so no window of `intervalMs` sees more than `requests` starts (a
 * provider counting a sliding window never sees more than it allows). Tokens are paid the same way:
 * a call of `t` tokens may start once the tokens of the calls before it are paid off, and then
 * holds the next one back for `t * intervalMs / tokens`. A pause holds every call back until it
 * ends. Each kind of limit keeps a "theoretical arrival time" (GCRA): the time from which the next
 * call conforms.
 */
import type { TaskType } from '../domain/work-unit-key.ts';

export interface RateLimit {
  /** Handler calls that may start per interval. @default unlimited */
  readonly requests?: number | undefined;
  /** Input tokens (the tasks' estimates) that may start per interval. @default unlimited */
  readonly tokens?: number | undefined;
  readonly intervalMs: number;
}

/** What is kept per task type: when the next call conforms to each limit, and a pause's end. */
export interface RateState {
  readonly requestsAt: number;
  readonly tokensAt: number;
  readonly pausedUntil: number;
}

export const OPEN_RATE: RateState = { requestsAt: 0, tokensAt: 0, pausedUntil: 0 };

export type Admission =
  | { readonly ok: true; readonly next: RateState }
  /** Not now: try again in `waitMs` (the state is unchanged). */
  | { readonly ok: false; readonly waitMs: number };

/** Whether a call of `tokens` tokens may start at `now` under `limit`, and the state after it. */
export function admit(
  state: RateState,
  limit: RateLimit | undefined,
  tokens: number,
  now: number,
): Admission {
  const from = Math.max(
    state.pausedUntil,
    limit?.requests ? state.requestsAt : 0,
    limit?.tokens ? state.tokensAt : 0,
  );
  if (from > now) return { ok: false, waitMs: from - now };
  if (!limit) return { ok: true, next: state };
  const cost = limit.tokens ? Math.min(tokens, limit.tokens) : 0;
  return {
    ok: true,
    next: {
      pausedUntil: state.pausedUntil,
      requestsAt: limit.requests ? Math.max(state.requestsAt, now) + limit.intervalMs / limit.requests : 0,
      tokensAt: limit.tokens ? Math.max(state.tokensAt, now) + (cost * limit.intervalMs) / limit.tokens : 0,
    },
  };
}

/** The state after a provider asked to wait until `until`. */
export const paused = (state: RateState, until: number): RateState => ({
  ...state,
  pausedUntil: Math.max(state.pausedUntil, until),
});

/** Rate-limit state of task types, kept by a store (see the file comment). */
export interface RateLimits {
  /**
   * Starts one call of `type` with `tokens` tokens if `limit` and any pause allow it now (and
   * records it), or says how long to wait. Without a limit only a pause holds a call back.
   */
  take(type: TaskType, limit: RateLimit | undefined, tokens: number): Promise<Admission>;
  /** Holds every call of `type` back for `ms` from now, on every process sharing the state. */
  pause(type: TaskType, ms: number): Promise<void>;
  /** How long each held-back type must still wait (pauses and paced calls), in ms; others absent. */
  waits(): Promise<Map<TaskType, number>>;
}

/** Rate-limit state in this process's memory (the SQLite store's: per process). */
export function createLocalRateLimits(clock: () => number): RateLimits {
  const states = new Map<TaskType, RateState>();
  return {
    async take(type, limit, tokens) {
      const admission = admit(states.get(type) ?? OPEN_RATE, limit, tokens, clock());
      if (admission.ok) states.set(type, admission.next);
      return admission;
    },
    async pause(type, ms) {
      states.set(type, paused(states.get(type) ?? OPEN_RATE, clock() + ms));
    },
    async waits() {
      const now = clock();
      return waitsOf(states, now);
    },
  };
}

/** The waits of states at `now` (`RateLimits.waits`). */
export function waitsOf(states: ReadonlyMap<TaskType, RateState>, now: number): Map<TaskType, number> {
  const waits = new Map<TaskType, number>();
  for (const [type, state] of states) {
    const until = Math.max(state.pausedUntil, state.requestsAt, state.tokensAt);
    if (until > now) waits.set(type, until - now);
  }
  return waits;
}
