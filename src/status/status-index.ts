/**
 * In-memory aggregates of the task counters, so a status query costs the same whether the store
 * holds a thousand tasks or a million. The store keeps absolute counters per work unit; this index
 * folds each unit into the eight roll-ups a filter can ask for (every subset of session, observer
 * and sender, within a workspace) and keeps, for each filter without a session, the per-session
 * breakdown. Updates carry a per-unit version, so stale or repeated updates are ignored.
 *
 * A summary unit has no observer or sender: it only joins roll-ups whose filter names neither.
 */

import { addCounters, type Counters, isZero, type UnitCounters, zeroCounters } from '../domain/counters.ts';
import type { TaskType, WorkUnitKey } from '../domain/work-unit-key.ts';
import {
  type Progress,
  progressOf,
  type RateState,
  ratePerSecond,
  recordCompletions,
} from './completion-rate.ts';
import { type SessionStatusCounts, type StatusCounts, toStatusCounts } from './counts.ts';
import { filterKey, filtersFedBy, type StatusQuery } from './status-filter.ts';

interface SessionGroup {
  readonly bySession: Map<string, Counters>;
  /** Session ids in order; `null` until asked for after a new session appeared. */
  sorted: string[] | null;
}

const ZERO: StatusCounts = toStatusCounts(zeroCounters());

export class StatusIndex {
  readonly #units = new Map<number, { counters: Counters; version: number }>();
  readonly #rollups = new Map<string, Counters>();
  readonly #groups = new Map<string, SessionGroup>();
  /** Counters per task type, whatever the workspace (metrics). */
  readonly #byTaskType = new Map<TaskType, Counters>();
  /** Completion rates of the roll-ups that completed tasks (see `completion-rate.ts`). */
  readonly #rates = new Map<string, RateState>();

  /** @param clock epoch milliseconds, for completion rates */
  constructor(readonly clock: () => number = Date.now) {}

  /**
   * Applies one unit's absolute counters. Returns `true` when any count changed (an older or equal
   * version, or identical counters, changes nothing). With `measure` (default), completions count
   * towards the rates; loading the counters at start-up is not a burst of completions.
   */
  apply(update: UnitCounters, measure = true): boolean {
    const previous = this.#units.get(update.unitId);
    if (previous && update.version <= previous.version) return false;
    const next = { ...update.counters };
    const delta: Counters = { ...next };
    if (previous) addCounters(delta, previous.counters, -1);
    this.#units.set(update.unitId, { counters: next, version: update.version });
    if (isZero(delta)) return false;
    this.#fold(update.key, delta, measure && delta.completed > 0 ? this.clock() : null);
    return true;
  }

  /** Throughput and time to idle for `filter`, now. */
  progress(filter: StatusQuery): Progress {
    const k = filterKey(filter);
    const counters = this.#rollups.get(k);
    const remaining = counters ? counters.pending + counters.running : 0;
    return progressOf(remaining, ratePerSecond(this.#rates.get(k), this.clock()));
  }

  /** The five counts for `filter`. */
  get(filter: StatusQuery): StatusCounts {
    const counters = this.#rollups.get(filterKey(filter));
    return counters ? toStatusCounts(counters) : ZERO;
  }

  /** Per-session counts for a filter without `sessionId`, ordered by session id. */
  sessions(filter: StatusQuery): SessionStatusCounts[] {
    const group = this.#groups.get(filterKey({ ...filter, sessionId: undefined }));
    if (!group) return [];
    group.sorted ??= [...group.bySession.keys()].sort(compareIds);
    return group.sorted.map((sessionId) => ({
      sessionId,
      ...toStatusCounts(group.bySession.get(sessionId) ?? zeroCounters()),
    }));
  }

  /** Number of units known, for diagnostics. */
  get unitCount(): number {
    return this.#units.size;
  }

  /** Counters per task type over every workspace. */
  byTaskType(): ReadonlyMap<TaskType, Readonly<Counters>> {
    return this.#byTaskType;
  }

  #fold(key: WorkUnitKey, delta: Counters, completedAt: number | null): void {
    let perType = this.#byTaskType.get(key.taskType);
    if (!perType) {
      perType = zeroCounters();
      this.#byTaskType.set(key.taskType, perType);
    }
    addCounters(perType, delta);
    for (const filter of filtersFedBy(key)) {
      const k = filterKey(filter);
      if (completedAt !== null)
        this.#rates.set(k, recordCompletions(this.#rates.get(k), delta.completed, completedAt));
      let counters = this.#rollups.get(k);
      if (!counters) {
        counters = zeroCounters();
        this.#rollups.set(k, counters);
        if (filter.sessionId !== undefined)
          this.#addToGroup({ ...filter, sessionId: undefined }, filter.sessionId, counters);
      }
      addCounters(counters, delta);
    }
  }

  #addToGroup(filter: StatusQuery, sessionId: string, counters: Counters): void {
    const k = filterKey(filter);
    let group = this.#groups.get(k);
    if (!group) {
      group = { bySession: new Map(), sorted: null };
      this.#groups.set(k, group);
    }
    group.bySession.set(sessionId, counters);
    group.sorted = null;
  }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
