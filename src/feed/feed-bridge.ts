/**
 * Joins a process to the change feed, both ways:
 * - out: the store's committed changes (units with their versions, enqueued tasks) are gathered for
 *   one tick and published as one message, so a burst of transactions costs one notification;
 * - in: another process's message makes the status engine read those units' counters from the store
 *   (and wakes idle workers when tasks were enqueued); `resync` reloads every unit and wakes them.
 */
import type { StatusEngine } from '../status/status-engine.ts';
import type { Store } from '../store/store.ts';
import type { ChangeFeed } from './change-feed.ts';

export interface FeedBridgeOptions {
  readonly feed: ChangeFeed;
  readonly store: Store;
  readonly status: StatusEngine;
  /** This process, as it signs its messages. */
  readonly origin: string;
  /** Tells idle workers to look for work. */
  readonly wake: () => void;
  /** A publish failed (it is retried) or a refresh failed (the next message or resync makes up). */
  readonly onError: (error: unknown) => void;
}

/** Pause before a message that could not be published is sent again. */
const RETRY_MS = 500;

/** Starts bridging; returns a function that stops it. */
export function bridgeFeed(options: FeedBridgeOptions): () => void {
  const { feed, store, status, origin, wake, onError } = options;
  const versions = new Map<number, number>();
  let enqueued = 0;
  let scheduled = false;
  let stopped = false;

  const gather = (units: readonly { id: number; version: number }[]): void => {
    for (const { id, version } of units) versions.set(id, Math.max(version, versions.get(id) ?? 0));
  };
  const flush = (): void => {
    scheduled = false;
    if (stopped) return;
    const message = { origin, units: [...versions].map(([id, version]) => ({ id, version })), enqueued };
    versions.clear();
    enqueued = 0;
    feed.publish(message).catch((error: unknown) => {
      onError(error);
      if (stopped) return;
      // Nobody heard it: send it again with the next changes, after a pause.
      gather(message.units);
      enqueued += message.enqueued;
      schedule(RETRY_MS);
    });
  };
  const schedule = (delayMs = 0): void => {
    if (scheduled) return;
    scheduled = true;
    if (delayMs > 0) setTimeout(flush, delayMs).unref();
    else setImmediate(flush);
  };

  const offs = [
    store.events.on('units:changed', (units) => {
      gather(units.map((u) => ({ id: u.unitId, version: u.version })));
      schedule();
    }),
    store.events.on('tasks:enqueued', ({ count }) => {
      enqueued += count;
      schedule();
    }),
    feed.events.on('message', (message) => {
      if (message.origin === origin) return;
      if (message.enqueued > 0) wake();
      if (message.units.length > 0) status.refresh(message.units.map((u) => u.id)).catch(onError);
    }),
    feed.events.on('resync', () => {
      status.reload().catch(onError);
      wake();
    }),
  ];
  return () => {
    stopped = true;
    for (const off of offs) off();
  };
}
