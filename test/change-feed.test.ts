/**
 * The change-feed contract, run against both feeds: what one process publishes every process on the
 * feed hears whole, however many units it names; the PostgreSQL feed reconnects after its listening
 * connection is killed and says `resync`.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { UnitCounters } from '../src/domain/counters.ts';
import type { ChangeFeed, FeedMessage } from '../src/feed/change-feed.ts';
import { bridgeFeed } from '../src/feed/feed-bridge.ts';
import { createFeedBus, createInProcessFeed } from '../src/feed/in-process-feed.ts';
import { createPostgresFeed } from '../src/feed/postgres-feed.ts';
import type { StatusEngine } from '../src/status/status-engine.ts';
import type { Store, StoreEvents } from '../src/store/store.ts';
import { TypedEmitter } from '../src/util/typed-emitter.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface FeedPair {
  readonly a: ChangeFeed;
  readonly b: ChangeFeed;
  readonly channel: string;
}

const FEEDS: { name: string; pair: () => Promise<FeedPair> }[] = [
  {
    name: 'in-process',
    async pair() {
      const bus = createFeedBus();
      return { a: createInProcessFeed({ bus }), b: createInProcessFeed({ bus }), channel: '' };
    },
  },
  {
    name: 'postgres',
    async pair() {
      const channel = `feed_test_${randomUUID().slice(0, 8)}`;
      const connectionString = inject('postgresUrl');
      const a = await createPostgresFeed({ connectionString, channel });
      const b = await createPostgresFeed({ connectionString, channel });
      return { a, b, channel };
    },
  },
];

/** Collects the messages a feed hears. */
function heard(feed: ChangeFeed): FeedMessage[] {
  const messages: FeedMessage[] = [];
  feed.events.on('message', (m) => void messages.push(m));
  return messages;
}

describe.each(FEEDS)('change feed ($name)', ({ pair }) => {
  async function open(): Promise<FeedPair> {
    const feeds = await pair();
    cleanups.push(
      () => feeds.a.close(),
      () => feeds.b.close(),
    );
    return feeds;
  }

  it('delivers a message to every feed on it, the publisher included', async () => {
    const { a, b } = await open();
    const atA = heard(a);
    const atB = heard(b);
    const message = { origin: 'A', units: [{ id: 7, version: 3 }], enqueued: 2 };
    await a.publish(message);
    await expect.poll(() => atB).toEqual([message]);
    await expect.poll(() => atA).toEqual([message]);
    expect(a.connected && b.connected).toBe(true);
  });

  it('delivers a message about thousands of units whole (a notification holds 8,000 bytes)', async () => {
    const { a, b } = await open();
    const atB = heard(b);
    const units = Array.from({ length: 3_000 }, (_, i) => ({ id: 1_000_000 + i, version: 1_000 + i }));
    await a.publish({ origin: 'A', units, enqueued: 5 });
    await expect.poll(() => atB.flatMap((m) => m.units).length).toBe(3_000);
    expect(atB.flatMap((m) => m.units)).toEqual(units);
    expect(atB.reduce((n, m) => n + m.enqueued, 0)).toBe(5);
    expect(new Set(atB.map((m) => m.origin))).toEqual(new Set(['A']));
  });
});

describe('change feed (postgres): a dropped listening connection', () => {
  it('reconnects, says resync, and hears again', async () => {
    const [{ a, b, channel }] = [await FEEDS[1]!.pair()];
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const resyncs: number[] = [];
    b.events.on('resync', () => void resyncs.push(Date.now()));
    const atB = heard(b);
    const admin = new pg.Client({ connectionString: inject('postgresUrl') });
    await admin.connect();
    cleanups.push(() => admin.end());
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`,
      [`LISTEN "${channel}"`],
    );
    expect(killed.rowCount).toBe(2);
    await expect.poll(() => resyncs.length, { timeout: 10_000 }).toBe(1);
    expect(b.connected).toBe(true);
    await a.publish({ origin: 'A', units: [{ id: 1, version: 2 }], enqueued: 0 });
    await expect.poll(() => atB.length).toBe(1);
  });
});

describe('the feed bridge', () => {
  it('gathers a tick of commits into one message, and sends again what a failed publish lost', async () => {
    const storeEvents = new TypedEmitter<StoreEvents>();
    const sent: FeedMessage[] = [];
    let failNext = true;
    const feed: ChangeFeed = {
      events: new TypedEmitter(),
      connected: true,
      async publish(message) {
        if (failNext) {
          failNext = false;
          throw new Error('connection lost');
        }
        sent.push(message);
      },
      close: async () => {},
    };
    const errors: unknown[] = [];
    const stop = bridgeFeed({
      feed,
      store: { events: storeEvents } as unknown as Store,
      status: {} as StatusEngine,
      origin: 'me',
      wake: () => {},
      onError: (error) => void errors.push(error),
    });
    cleanups.push(async () => stop());
    const unit = (unitId: number, version: number) =>
      ({ unitId, version, key: {}, counters: {} }) as unknown as UnitCounters;
    storeEvents.emit('units:changed', [unit(1, 5), unit(2, 3)]);
    storeEvents.emit('units:changed', [unit(1, 6)]);
    storeEvents.emit('tasks:enqueued', { count: 2 });
    await expect.poll(() => errors.length).toBe(1);
    storeEvents.emit('units:changed', [unit(3, 1)]);
    await expect.poll(() => sent.length).toBe(1);
    expect(sent[0]?.origin).toBe('me');
    expect(sent[0]?.enqueued).toBe(2);
    expect([...(sent[0]?.units ?? [])].sort((a, b) => a.id - b.id)).toEqual([
      { id: 1, version: 6 },
      { id: 2, version: 3 },
      { id: 3, version: 1 },
    ]);
  });
});
