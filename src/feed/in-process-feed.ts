/**
 * The change feed of the embedded SQLite store: one process per file, so its changes are the
 * store's own commits, heard as they happen (the store announces each one right after it commits).
 */
import type { StoreEvents } from '../store/store.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { ChangeFeed, ChangeFeedEvents } from './change-feed.ts';

/** `worker`: whether this process runs a worker (no other process can: the file is its own). */
export function createInProcessFeed(
  storeEvents: TypedEmitter<StoreEvents>,
  presence?: { readonly worker: boolean },
): ChangeFeed {
  const events = new TypedEmitter<ChangeFeedEvents>();
  const off = storeEvents.on('units:changed', (changes) => events.emit('changes', changes));
  return {
    events,
    connected: true,
    workers: presence ? (presence.worker ? 1 : 0) : null,
    // The store announces each commit before the call that made it returns: nothing is in flight.
    sync: () => Promise.resolve(),
    async close() {
      off();
      events.removeAllListeners();
    },
  };
}
