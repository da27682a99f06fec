/**
 * The change feed: how a process hears the counter changes committed to its store, by itself and
 * by every other process on it. Each message is one committed transaction's changes (or a piece of
 * them), as deltas stamped with the transaction (`UnitChanges`): a listener keeping a sum applies
 * those its own read of the store did not include (`ReadSnapshot.includes`), so order does not
 * matter. A listener that may have missed messages (its connection dropped) gets `resync` once it
 * hears again, and reads what it keeps again.
 *
 * `workers` is who runs the tasks: the processes on the store that run a worker (on PostgreSQL, the
 * listening connections that say so in their `application_name`, counted in `pg_stat_activity`: a
 * process that dies takes its connection with it, so no table and no heartbeat row are kept).
 *
 * `sync()` is a read barrier: it resolves once every change committed before it was called has been
 * heard (PostgreSQL delivers notifications in commit order, so hearing a notification this process
 * sent after the call proves it), so a sum kept from the feed can answer as of the call.
 *
 * Implementations: `in-process-feed.ts` (the embedded SQLite store: its commits, as they happen)
 * and `postgres-feed.ts` (LISTEN to the NOTIFYs the database sends from inside each transaction:
 * no other component). The feed is not part of the store contract.
 */
import type { UnitChanges } from '../domain/counters.ts';
import type { TypedEmitter } from '../util/typed-emitter.ts';

export interface ChangeFeedEvents {
  /** Counter changes of a committed transaction (a piece of them, for a large one). */
  changes: UnitChanges;
  /** Changes may have been missed (the feed reconnected): read again what is kept. */
  resync: undefined;
  /**
   * The feed stopped hearing the store (its connection failed or went silent), with the reason:
   * what is kept may go stale until the `resync` that follows the reconnection.
   */
  down: string;
  /** The number of worker processes on the store changed (`ChangeFeed.workers`). */
  workers: number | null;
}

export interface ChangeFeed {
  readonly events: TypedEmitter<ChangeFeedEvents>;
  /** Whether the feed hears changes now. */
  readonly connected: boolean;
  /**
   * Processes on this store that run a worker, this one included: on SQLite this process or none;
   * on PostgreSQL every process on the database and schema, known within a heartbeat of one
   * starting or dying. `null` when the feed cannot know (it was opened without a `presence`).
   */
  readonly workers: number | null;
  /**
   * Resolves once every change committed before the call has been heard (at once when changes are
   * heard as they commit; at once too while disconnected: a `resync` follows the reconnection).
   */
  sync(): Promise<void>;
  close(): Promise<void>;
}
