/**
 * Wakes idle workers when the change feed brings stored work: a unit's pending count grew with
 * nothing started (new tasks, or failed ones put back), possibly by another process; and after a
 * `resync`, since what was missed may have been work. (The status engine hears the feed itself.)
 */
import type { UnitChanges } from '../domain/counters.ts';
import type { ChangeFeed } from './change-feed.ts';

const storesWork = (changes: UnitChanges): boolean =>
  changes.units.some(({ delta }) => delta.pending > 0 && delta.running === 0);

/** Starts waking; returns a function that stops it. */
export function wakeOnStoredWork(feed: Pick<ChangeFeed, 'events'>, wake: () => void): () => void {
  const offs = [
    feed.events.on('changes', (changes) => {
      if (storesWork(changes)) wake();
    }),
    feed.events.on('resync', wake),
  ];
  return () => {
    for (const off of offs) off();
  };
}
