/**
 * The status engine answers `deriverStatus` from sums of the store's per-unit counters, and keeps
 * in memory, exact and pushed, the sums that clients watch or asked for lately. Nothing is kept per
 * work unit and nothing is read at start-up: memory and start-up grow with what clients look at,
 * never with history.
 *
 * ## Cold and hot
 * A cold filter is answered by one indexed aggregate of the store (`Store.sumCounters`); that read
 * becomes the filter's roll-up (`rollup.ts`), kept with the snapshot it was read at and brought up
 * to date by every committed change the change feed brings that the snapshot did not include, so
 * the next query is answered from memory. Roll-ups of filters that live topics watch are pinned;
 * the others are kept in least-recently-used order within a budget of entries (a roll-up is one
 * entry, plus one per session of its breakdown) and dropped beyond it. A query answered from memory
 * first waits for the feed's read barrier (`sync`): on PostgreSQL, one notification's round trip, so
 * the answer holds every change committed anywhere before the query was asked.
 *
 * ## Slots (one per filter)
 * A slot holds the filter's `current` roll-up (the one answers come from) and, while a fresher one
 * is being read, `next`: a breakdown asked of a roll-up without one, or a read again after the feed
 * may have missed changes (`resync`). Every change goes to both; when `next` is ready it replaces
 * `current` and `status:reloaded` names the filter. A slot whose only roll-up failed to load is
 * removed, so the next question reads again.
 *
 * ## Resync
 * The pinned filters are read again (work in proportion to what clients watch) and the others are
 * forgotten, to be read again when next asked.
 *
 * ## Liveness
 * `live` until the feed says it is `down`: then the counts held are the last known, and
 * `status:liveness` says so with the reason. Once the feed hears again and the resync that follows
 * has read every watched filter again (retried every second until it can), `live` again, after the
 * `status:reloaded` of those reads: the first live status is exact. A `down` during that resync
 * keeps it down.
 *
 * ## Workers
 * Who runs the tasks is the feed's to know (`ChangeFeed.workers`): the engine passes it on, as
 * `status:workers` when it changes, so a status can say that no worker is running.
 *
 * ## Throughput
 * Completion rates (`completion-rate.ts`) are kept per filter fed by a change that completed tasks,
 * hot or not, and forgotten once stale: that memory grows with recent work only.
 */
import type { UnitChanges } from '../domain/counters.ts';
import type { WorkUnitKey } from '../domain/work-unit-key.ts';
import type { ChangeFeed } from '../feed/change-feed.ts';
import type { Store } from '../store/store.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import {
  type Progress,
  progressOf,
  type RateState,
  ratePerSecond,
  recordCompletions,
  STALE_MS,
} from './completion-rate.ts';
import type { SessionStatusCounts, StatusCounts } from './counts.ts';
import { Rollup } from './rollup.ts';
import { filterKey, filtersFedBy, type StatusQuery } from './status-filter.ts';

export interface StatusEvents {
  /** Units whose counts changed in one committed transaction (the filters they feed may have moved). */
  'status:changed': readonly WorkUnitKey[];
  /** These filters (by `filterKey`) were read again from the store: their counts may have moved. */
  'status:reloaded': readonly string[];
  /** The counts stopped, or started again, following the store's changes (see "Liveness"). */
  'status:liveness': Liveness;
  /** The number of processes running a worker on the store changed (`StatusEngine.workers`). */
  'status:workers': number | null;
}

/** Whether the counts follow the store's changes now; when not, why. */
export interface Liveness {
  readonly live: boolean;
  /** Why they do not (`null` while live). */
  readonly reason: string | null;
}

const LIVE: Liveness = { live: true, reason: null };

/** A filter held hot while a live topic watches it; its counts are read synchronously. */
export interface StatusWatch {
  counts(): StatusCounts;
  /** Per-session counts, ordered by session id (only for a watch made with `sessions`). */
  sessions(): SessionStatusCounts[];
  /** Stops holding the filter (it may then be dropped like any other). */
  release(): void;
}

export interface StatusEngine {
  readonly events: TypedEmitter<StatusEvents>;
  /**
   * The counts for `filter` (unknown ids give zeros): from memory when hot, else one store read.
   * With `sessions`, a cold read also takes the per-session breakdown, for a `sessions()` to follow.
   */
  get(filter: StatusQuery, options?: { readonly sessions?: boolean }): Promise<StatusCounts>;
  /** Per-session breakdown for a filter without `sessionId`, ordered by session id. */
  sessions(filter: StatusQuery): Promise<SessionStatusCounts[]>;
  /** Throughput and estimated time to idle for `filter`, given its counts now. */
  progress(filter: StatusQuery, counts: StatusCounts): Progress;
  /** Holds `filter` hot (with its breakdown when `sessions`) until released; resolves once read. */
  watch(filter: StatusQuery, options?: { readonly sessions?: boolean }): Promise<StatusWatch>;
  /** Resolves once every change committed before the call has been applied (the feed's barrier). */
  sync(): Promise<void>;
  /** Applies a committed transaction's changes (the feed's `changes` come here). */
  apply(changes: UnitChanges): void;
  /** Changes may have been missed: reads the watched filters again, forgets the others (on `resync`). */
  resync(): Promise<void>;
  /** Whether the counts follow the store's changes now (see "Liveness"). */
  liveness(): Liveness;
  /** Processes running a worker on the store now (`ChangeFeed.workers`): `null` when not known. */
  workers(): number | null;
  /** What is held: roll-ups, their entries, those pinned by watches, store reads so far. */
  stats(): { rollups: number; entries: number; pinned: number; reads: number };
  close(): void;
}

export interface StatusEngineOptions {
  readonly store: Pick<Store, 'sumCounters'>;
  /**
   * Where committed changes are heard (`openFeed` for the store's URL). The engine applies its
   * `changes`, reads again on `resync`, and awaits its read barrier (`sync`) before a query is
   * answered from memory, so the answer holds every change committed before the query.
   */
  readonly feed: Pick<ChangeFeed, 'events' | 'sync' | 'workers'>;
  /** After a failed resync, how long until the next try, in ms. @default 1000 */
  readonly resyncRetryMs?: number;
  /**
   * Entries kept for filters nobody watches (a roll-up is one, plus one per session of its
   * breakdown); beyond it the least recently used are dropped. Watched filters always stay.
   * @default 100000
   */
  readonly maxEntries?: number;
  /** Epoch milliseconds, for throughput. @default Date.now */
  readonly clock?: () => number;
}

interface Slot {
  current: Rollup;
  next: Rollup | null;
  /** Watches holding this filter. */
  pins: number;
}

export const DEFAULT_STATUS_ENTRIES = 100_000;

export function createStatusEngine(options: StatusEngineOptions): StatusEngine {
  const { store } = options;
  const clock = options.clock ?? Date.now;
  const maxEntries = options.maxEntries ?? DEFAULT_STATUS_ENTRIES;
  const events = new TypedEmitter<StatusEvents>();
  /** Slots by filter key, least recently used first. */
  const slots = new Map<string, Slot>();
  const rates = new Map<string, RateState>();
  let entries = 0;
  let reads = 0;
  let closed = false;

  const grow = (n: number): void => {
    entries += n;
  };
  const read = (filter: StatusQuery, withSessions: boolean): Rollup => {
    reads++;
    const sums = store.sumCounters(filter, { sessions: withSessions });
    const rollup = new Rollup(filter, withSessions, sums, grow);
    entries += 1;
    return rollup;
  };
  /** Roll-ups whose entries were given back (a failed read drops itself: counted here once). */
  const forgotten = new WeakSet<Rollup>();
  const forget = (rollup: Rollup | null): void => {
    if (!rollup || forgotten.has(rollup)) return;
    forgotten.add(rollup);
    entries -= rollup.entries;
    rollup.drop();
  };
  const remove = (key: string, slot: Slot): void => {
    if (slots.get(key) !== slot) return;
    slots.delete(key);
    forget(slot.current);
    forget(slot.next);
  };

  /** Drops the least recently used unpinned slots while over the budget. */
  const evict = (): void => {
    if (entries <= maxEntries) return;
    for (const [key, slot] of slots) {
      if (entries <= maxEntries) break;
      if (slot.pins === 0 && slot.current.mode === 'ready' && !slot.next) remove(key, slot);
    }
  };

  /** Swaps in `rollup` as the slot's `current` once it is ready. */
  const promote = (key: string, slot: Slot, rollup: Rollup): Promise<void> =>
    rollup.ready.then(
      () => {
        if (slot.next !== rollup || slots.get(key) !== slot) return;
        forget(slot.current);
        slot.current = rollup;
        slot.next = null;
        events.emit('status:reloaded', [key]);
      },
      (error: unknown) => {
        if (slot.next === rollup) slot.next = null;
        forget(rollup);
        throw error;
      },
    );

  /**
   * The filter's slot, read from the store when cold; resolves once its roll-up can answer. The
   * slot comes pinned (no eviction can take it meanwhile, not even between this promise resolving
   * and its reader running): the caller unpins it (a query, once it has read its answer).
   */
  const hold = async (filter: StatusQuery, withSessions: boolean): Promise<Slot> => {
    if (closed) throw new Error('the status engine is closed');
    const key = filterKey(filter);
    // A roll-up kept from the feed answers once the feed has caught up with the call (a fresh
    // read of the store is as of the call by itself).
    if (slots.get(key)?.current.mode === 'ready') await options.feed.sync();
    let slot = slots.get(key);
    if (slot) {
      slots.delete(key); // most recently used: to the end
      slots.set(key, slot);
    } else {
      slot = { current: read(filter, withSessions), next: null, pins: 0 };
      slots.set(key, slot);
    }
    const held = slot;
    held.pins++;
    try {
      if (withSessions && !held.current.withSessions) {
        if (!held.next?.withSessions) {
          forget(held.next);
          held.next = read(filter, true);
        }
        await promote(key, held, held.next);
      }
      await held.current.ready;
    } catch (error) {
      held.pins--;
      if (held.current.mode === 'dropped') remove(key, held);
      throw error;
    }
    return held;
  };

  /** Reads an answer from the filter's roll-up (as of the call), then lets eviction run. */
  const answer = async <T>(
    filter: StatusQuery,
    withSessions: boolean,
    take: (r: Rollup) => T,
  ): Promise<T> => {
    const slot = await hold(filter, withSessions);
    try {
      return take(slot.current);
    } finally {
      slot.pins--;
      evict();
    }
  };

  const apply = (changes: UnitChanges): void => {
    if (closed || changes.units.length === 0) return;
    const now = clock();
    const keys: WorkUnitKey[] = [];
    for (const unit of changes.units) {
      for (const filter of filtersFedBy(unit.key)) {
        const key = filterKey(filter);
        if (unit.delta.completed > 0)
          rates.set(key, recordCompletions(rates.get(key), unit.delta.completed, now));
        const slot = slots.get(key);
        if (!slot) continue;
        slot.current.offer(changes.tx, unit);
        slot.next?.offer(changes.tx, unit);
      }
      keys.push(unit.key);
    }
    events.emit('status:changed', keys);
  };

  const resync = async (): Promise<void> => {
    const reloads: Promise<void>[] = [];
    for (const [key, slot] of [...slots]) {
      if (slot.pins === 0) {
        remove(key, slot);
        continue;
      }
      forget(slot.next);
      slot.next = read(slot.current.filter, slot.current.withSessions);
      reloads.push(promote(key, slot, slot.next));
    }
    await Promise.all(reloads);
  };

  let liveness = LIVE;
  /** Outages so far: a resync that began before the latest one does not end it. */
  let outages = 0;
  let retry: NodeJS.Timeout | undefined;
  const setLiveness = (next: Liveness): void => {
    if (next.live === liveness.live && next.reason === liveness.reason) return;
    liveness = next;
    events.emit('status:liveness', next);
  };
  /** Reads the watched filters again; live once every read succeeded, else tries again. */
  const recover = (): void => {
    clearTimeout(retry);
    const outage = outages;
    resync().then(
      () => {
        if (outage === outages) setLiveness(LIVE);
      },
      () => {
        // A watched filter that cannot be read again keeps its last sums meanwhile.
        if (outage === outages) retry = setTimeout(recover, options.resyncRetryMs ?? 1_000).unref();
      },
    );
  };

  const offs = [
    options.feed.events.on('changes', apply),
    options.feed.events.on('resync', recover),
    options.feed.events.on('workers', (n) => events.emit('status:workers', n)),
    options.feed.events.on('down', (reason) => {
      outages++;
      clearTimeout(retry);
      setLiveness({
        live: false,
        reason: `the store cannot be heard (${reason}): counts are the last known`,
      });
    }),
  ];

  const pruneRates = setInterval(() => {
    const now = clock();
    for (const [key, rate] of rates) if (now - rate.at > STALE_MS) rates.delete(key);
  }, STALE_MS);
  pruneRates.unref();

  return {
    events,

    get: (filter, getOptions = {}) =>
      answer(filter, getOptions.sessions === true && filter.sessionId === undefined, (rollup) =>
        rollup.counts(),
      ),

    sessions: (filter) => answer(filter, filter.sessionId === undefined, (rollup) => rollup.sessions()),

    progress(filter, counts) {
      const rate = ratePerSecond(rates.get(filterKey(filter)), clock());
      return progressOf(counts.pendingWorkUnits + counts.inProgressWorkUnits, rate);
    },

    async watch(filter, watchOptions = {}) {
      const key = filterKey(filter);
      const slot = await hold(filter, watchOptions.sessions === true && filter.sessionId === undefined);
      evict();
      let released = false;
      return {
        // The slot's current roll-up, whichever it is now (a resync may have replaced it).
        counts: () => slot.current.counts(),
        sessions: () => slot.current.sessions(),
        release() {
          if (released) return;
          released = true;
          slot.pins--;
          if (slots.get(key) === slot) evict();
        },
      };
    },

    sync: () => options.feed.sync(),
    apply,
    resync,
    liveness: () => liveness,
    workers: () => options.feed.workers,

    stats() {
      let pinned = 0;
      for (const slot of slots.values()) if (slot.pins > 0) pinned++;
      return { rollups: slots.size, entries, pinned, reads };
    },

    close() {
      closed = true;
      for (const off of offs) off();
      clearInterval(pruneRates);
      clearTimeout(retry);
      for (const [key, slot] of [...slots]) remove(key, slot);
      events.removeAllListeners();
    },
  };
}
