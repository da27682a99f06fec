/**
 * The status engine answers `deriverStatus` from the in-memory index and announces every change.
 * It listens to the store's committed unit changes (no polling), so its counts follow the store
 * exactly; at start-up it rebuilds the index from the store's durable per-unit counters.
 */
import type { Counters, UnitCounters } from '../domain/counters.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import type { Store } from '../store/store.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { Progress } from './completion-rate.ts';
import type { SessionStatusCounts, StatusCounts } from './counts.ts';
import type { StatusChange, StatusQuery } from './status-filter.ts';
import { StatusIndex } from './status-index.ts';

export interface StatusEvents {
  /** Units whose counts changed in one committed transaction. */
  'status:changed': readonly StatusChange[];
}

export interface StatusEngine {
  readonly events: TypedEmitter<StatusEvents>;
  /** The five counts for `filter`; unknown ids give zeros. */
  get(filter: StatusQuery): StatusCounts;
  /** Counters per task type over every workspace (metrics). */
  byTaskType(): ReadonlyMap<TaskType, Readonly<Counters>>;
  /** Throughput and estimated time to idle for `filter`, now. */
  progress(filter: StatusQuery): Progress;
  /** Per-session breakdown for a filter without `sessionId`, ordered by session id. */
  sessions(filter: StatusQuery): SessionStatusCounts[];
  /** Applies unit counters from elsewhere (another instance); announces what changed. */
  apply(updates: readonly UnitCounters[]): void;
  /** Reads these units' counters from the store and applies them (another process changed them). */
  refresh(unitIds: readonly number[]): Promise<void>;
  /** Reads every unit's counters again (after missed changes) and announces what moved. */
  reload(): Promise<void>;
  /** Stops listening to the store. */
  close(): void;
}

export interface StatusEngineOptions {
  readonly store: Store;
  /** Epoch milliseconds, for throughput. @default Date.now */
  readonly clock?: () => number;
}

export async function createStatusEngine(options: StatusEngineOptions): Promise<StatusEngine> {
  const index = new StatusIndex(options.clock);
  const events = new TypedEmitter<StatusEvents>();

  const apply = (updates: readonly UnitCounters[], measure = true): void => {
    const changed: StatusChange[] = [];
    for (const update of updates) if (index.apply(update, measure)) changed.push(update.key);
    if (changed.length > 0) events.emit('status:changed', changed);
  };

  // Listen first, then load: versions make the order of the two irrelevant.
  const unsubscribe = options.store.events.on('units:changed', apply);
  for (const unit of await options.store.loadUnitCounters()) index.apply(unit, false);

  return {
    events,
    get: (filter) => index.get(filter),
    progress: (filter) => index.progress(filter),
    byTaskType: () => index.byTaskType(),
    sessions: (filter) => index.sessions(filter),
    apply: (updates) => apply(updates),
    async refresh(unitIds) {
      if (unitIds.length > 0) apply(await options.store.loadUnitCounters(unitIds));
    },
    async reload() {
      // Changes missed while disconnected are not a burst of completions now.
      apply(await options.store.loadUnitCounters(), false);
    },
    close() {
      unsubscribe();
      events.removeAllListeners();
    },
  };
}
