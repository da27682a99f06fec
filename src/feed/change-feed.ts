/**
 * The change feed: how the processes sharing one store hear of each other's commits. A process
 * publishes, once per tick of committed transactions, which work units changed (with their new
 * versions) and how many tasks were enqueued; every process hears every message, its own included
 * (it skips those by `origin`). Versioned absolute counters make a repeated or reordered message
 * harmless; a listener that may have missed messages (its connection dropped) gets `resync` once it
 * hears again, and reloads everything.
 *
 * Implementations: `in-process-feed.ts` (one process, the embedded default) and `postgres-feed.ts`
 * (LISTEN/NOTIFY, no other component). The feed is not part of the store contract.
 */
import type { TypedEmitter } from '../util/typed-emitter.ts';

export interface FeedMessage {
  /** The publishing process (listeners skip their own messages). */
  readonly origin: string;
  /** Units whose counters changed, with the version they reached. */
  readonly units: readonly { readonly id: number; readonly version: number }[];
  /** Tasks enqueued (idle workers elsewhere should look for work). */
  readonly enqueued: number;
}

export interface ChangeFeedEvents {
  message: FeedMessage;
  /** Messages may have been missed (the feed reconnected): reload everything. */
  resync: undefined;
}

export interface ChangeFeed {
  readonly events: TypedEmitter<ChangeFeedEvents>;
  /** Whether the feed hears messages now. */
  readonly connected: boolean;
  /** Sends a message to every process on the feed; resolves once it is handed over. */
  publish(message: FeedMessage): Promise<void>;
  close(): Promise<void>;
}
