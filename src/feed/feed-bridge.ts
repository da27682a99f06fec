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
  /** A publish or a refresh failed (the next message or resync makes up for it). */
  readonly onError: (error: unknown) => void;
}

/** Starts bridging; returns a function that stops it. */
export function bridgeFeed(options: FeedBridgeOptions): () => void {
  const { feed, store, status, origin, wake, onError } = options;
  const versions = new Map<number, number>();
  let enqueued = 0;
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    const units = [...versions].map(([id, version]) => ({ id, version }));
    const message = { origin, units, enqueued };
    versions.clear();
    enqueued = 0;
    feed.publish(message).catch(onError);
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };

  const offs = [
    store.events.on('units:changed', (units) => {
      for (const unit of units)
        versions.set(unit.unitId, Math.max(unit.version, versions.get(unit.unitId) ?? 0));
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
    for (const off of offs) off();
  };
}
