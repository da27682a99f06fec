/**
 * Refusals (`HandlerRefusedError`: the HTTP handler's 401/403): the service refused, not the task.
 *
 * ## Protocol (a pure state machine; the caller passes the time)
 * `open` -> `paused` (the first refusal: nothing is claimed for 1 s) -> `probing` (the pause is
 * over: one unit at a time is claimed) -> `paused` again (another refusal: twice as long, up to a
 * minute) ... -> `open` on the first success. Refusals from attempts already in flight while paused
 * do not lengthen the pause. One episode runs from the first refusal to that success.
 */
export type DispatchState =
  | { readonly paused: false }
  | { readonly paused: true; readonly since: number; readonly until: number; readonly error: string };

export class Refusals {
  /** Refusals in this episode (0: open), when it began, until when nothing is claimed, and why. */
  private episode = { count: 0, since: 0, until: 0, error: '' };

  /** Nothing may be claimed now. */
  paused(now: number): boolean {
    return this.episode.count > 0 && now < this.episode.until;
  }

  /** Inside an episode (paused, or probing with one unit at a time). */
  get probing(): boolean {
    return this.episode.count > 0;
  }

  /** One more refusal: `until` when this one began a pause, `null` when a pause already covers it. */
  refused(message: string, now: number): { readonly until: number; readonly first: boolean } | null {
    const { count, since, until } = this.episode;
    if (count > 0 && now < until) return null; // the attempts already in flight
    const next = count + 1;
    const pauseUntil = now + Math.min(60_000, 1_000 * 2 ** (next - 1));
    this.episode = { count: next, since: next === 1 ? now : since, until: pauseUntil, error: message };
    return { until: pauseUntil, first: next === 1 };
  }

  /** An attempt succeeded: the episode's length in ms when this ended one, else `null`. */
  succeeded(now: number): number | null {
    if (this.episode.count === 0) return null;
    const pausedMs = now - this.episode.since;
    this.episode = { count: 0, since: 0, until: 0, error: '' };
    return pausedMs;
  }

  get state(): DispatchState {
    const { count, since, until, error } = this.episode;
    return count === 0 ? { paused: false } : { paused: true, since, until, error };
  }
}
