/**
 * The change feed of one process (the embedded SQLite default): messages go to the listeners of
 * the feeds sharing one `bus`, in the same process. By default each feed has a bus of its own.
 */
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { ChangeFeed, ChangeFeedEvents, FeedMessage } from './change-feed.ts';

export type FeedBus = TypedEmitter<{ message: FeedMessage }>;

export function createFeedBus(): FeedBus {
  return new TypedEmitter<{ message: FeedMessage }>();
}

export function createInProcessFeed(options: { readonly bus?: FeedBus } = {}): ChangeFeed {
  const bus = options.bus ?? createFeedBus();
  const events = new TypedEmitter<ChangeFeedEvents>();
  const off = bus.on('message', (message) => events.emit('message', message));
  return {
    events,
    connected: true,
    async publish(message) {
      // Delivered after the publisher's current work, as a database notification would be.
      queueMicrotask(() => bus.emit('message', message));
    },
    async close() {
      off();
      events.removeAllListeners();
    },
  };
}
