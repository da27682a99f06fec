import type { Progress } from '../status/completion-rate.ts';
import type { SessionStatusCounts, StatusCounts } from '../status/counts.ts';
import { sameStatusCounts } from '../status/counts.ts';
import type { Liveness } from '../status/status-engine.ts';
import type { StatusQuery } from '../status/status-filter.ts';

/** One status as delivered to a client: the counts for a filter, with the breakdown when asked. */
export interface StatusView {
  readonly filter: StatusQuery;
  readonly counts: StatusCounts;
  /** Throughput and time to idle; `undefined` when not computed (the resolver computes it). */
  readonly progress?: Progress | undefined;
  /** Per-session breakdown; `undefined` when not computed (the resolver computes it on demand). */
  readonly sessions?: readonly SessionStatusCounts[] | undefined;
  /** Whether the counts followed the store's changes when computed; `undefined`: ask the engine. */
  readonly liveness?: Liveness | undefined;
  /** Processes running a worker when computed; `undefined`: ask the engine. */
  readonly workers?: number | null | undefined;
  /** When the change this view reports was announced (epoch ms, sub-ms precision). */
  readonly changedAt?: number;
  /** When this view was computed for publication (epoch ms, sub-ms precision). */
  readonly publishedAt?: number;
}

/** Epoch milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export const epochNow = (): number => performance.timeOrigin + performance.now();

export function sameView(a: StatusView, b: StatusView): boolean {
  if (!sameStatusCounts(a.counts, b.counts)) return false;
  if (a.liveness?.live !== b.liveness?.live || a.liveness?.reason !== b.liveness?.reason) return false;
  if (a.workers !== b.workers) return false;
  if (
    a.progress?.throughputPerSecond !== b.progress?.throughputPerSecond ||
    a.progress?.estimatedSecondsToIdle !== b.progress?.estimatedSecondsToIdle
  )
    return false;
  if (a.sessions === b.sessions) return true;
  if (!a.sessions || !b.sessions || a.sessions.length !== b.sessions.length) return false;
  return a.sessions.every((s, i) => {
    const o = b.sessions?.[i];
    return o !== undefined && o.sessionId === s.sessionId && sameStatusCounts(s, o);
  });
}
