/**
 * A roll-up: one status filter's summed counters (and, when asked for, its per-session breakdown),
 * read once from the store and then kept exact by the committed changes the read did not include.
 *
 * ## States
 * `loading` -> `ready` -> `dropped`, or `loading` -> `dropped` (the read failed).
 * - `loading`: the store read is in flight. It may or may not include a change heard meanwhile, so
 *   changes offered now are kept (`#buffer`) until the read says which commits it saw.
 * - `ready` (`#enterReady`): the read's sums, plus every buffered change its snapshot does not
 *   include; from here on a change is added at once unless the snapshot includes it (a change
 *   heard late for a commit the read saw).
 * - `dropped` (`drop`): evicted or replaced; changes are ignored and nothing may read it.
 * Only the status engine (`status-engine.ts`) creates, offers to and drops roll-ups.
 */
import {
  addCounters,
  type CommitStamp,
  type Counters,
  type CountersSnapshot,
  type ReadSnapshot,
  type UnitDelta,
  zeroCounters,
} from '../domain/counters.ts';
import { type SessionStatusCounts, type StatusCounts, toStatusCounts } from './counts.ts';
import type { StatusQuery } from './status-filter.ts';

type Mode = 'loading' | 'ready' | 'dropped';

export class Rollup {
  #mode: Mode = 'loading';
  #snapshot: ReadSnapshot | null = null;
  #buffer: [CommitStamp, UnitDelta][] = [];
  #total: Counters = zeroCounters();
  #bySession: Map<string, Counters> | null = null;
  /** Session ids in order; `null` until asked for after a new session appeared. */
  #sorted: string[] | null = null;
  /** Resolves once ready; rejects when the read failed (the roll-up is dropped then). */
  readonly ready: Promise<void>;

  /**
   * @param read the store's sums for `filter`, with the snapshot they were read at
   * @param onGrow told how many entries (sessions of the breakdown) the roll-up gained
   */
  constructor(
    readonly filter: StatusQuery,
    readonly withSessions: boolean,
    read: Promise<CountersSnapshot>,
    readonly onGrow: (entries: number) => void,
  ) {
    this.ready = read.then(
      (sums) => this.#enterReady(sums),
      (error: unknown) => {
        this.drop();
        throw error;
      },
    );
  }

  get mode(): Mode {
    return this.#mode;
  }

  /** Entries this roll-up holds: itself and one per session of its breakdown. */
  get entries(): number {
    return 1 + (this.#bySession?.size ?? 0);
  }

  /**
   * A committed change of a unit this filter matches. Returns `true` when the counts moved now
   * (a ready roll-up whose read did not include it).
   */
  offer(tx: CommitStamp, unit: UnitDelta): boolean {
    if (this.#mode === 'loading') {
      this.#buffer.push([tx, unit]);
      return false;
    }
    if (this.#mode === 'dropped' || this.#snapshot?.includes(tx)) return false;
    this.#add(unit);
    return true;
  }

  counts(): StatusCounts {
    this.#assertReady();
    return toStatusCounts(this.#total);
  }

  /** Per-session counts, ordered by session id (empty without a breakdown). */
  sessions(): SessionStatusCounts[] {
    this.#assertReady();
    const bySession = this.#bySession;
    if (!bySession) return [];
    this.#sorted ??= [...bySession.keys()].sort(compareIds);
    return this.#sorted.map((sessionId) => ({
      sessionId,
      ...toStatusCounts(bySession.get(sessionId) ?? zeroCounters()),
    }));
  }

  drop(): void {
    this.#mode = 'dropped';
    this.#buffer = [];
  }

  #enterReady(sums: CountersSnapshot): void {
    if (this.#mode !== 'loading') return; // dropped while its read was in flight
    this.#snapshot = sums.snapshot;
    this.#total = { ...sums.total };
    if (this.withSessions) {
      this.#bySession = new Map((sums.sessions ?? []).map(([id, counters]) => [id, { ...counters }]));
      this.onGrow(this.#bySession.size);
    }
    this.#mode = 'ready';
    const buffered = this.#buffer;
    this.#buffer = [];
    for (const [tx, unit] of buffered) if (!sums.snapshot.includes(tx)) this.#add(unit);
  }

  #add(unit: UnitDelta): void {
    addCounters(this.#total, unit.delta);
    if (!this.#bySession) return;
    const { sessionId } = unit.key;
    let counters = this.#bySession.get(sessionId);
    if (!counters) {
      counters = zeroCounters();
      this.#bySession.set(sessionId, counters);
      this.#sorted = null;
      this.onGrow(1);
    }
    addCounters(counters, unit.delta);
  }

  #assertReady(): void {
    if (this.#mode !== 'ready') throw new Error(`roll-up read while ${this.#mode}`);
  }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
