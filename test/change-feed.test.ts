/**
 * The change-feed contract, run against both stores and their feeds: what a store commits, every
 * feed on it hears, as deltas stamped with the transaction, whole however many units it touched;
 * what rolls back is never heard; `sync()` resolves only after earlier commits were heard. The
 * PostgreSQL feed reconnects after its listening connection is killed and says `resync`; the
 * bridge hands changes to the status engine and wakes workers for stored work.
 */
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { type Counters, type UnitChanges, zeroCounters } from '../src/domain/counters.ts';
import { planMessages } from '../src/domain/task-generation.ts';
import type { ChangeFeed, ChangeFeedEvents } from '../src/feed/change-feed.ts';

import { openFeed } from '../src/feed/open-feed.ts';
import { createPostgresFeed, presenceName } from '../src/feed/postgres-feed.ts';
import { wakeOnStoredWork } from '../src/feed/wake-on-stored-work.ts';
import { openStore } from '../src/store/open-store.ts';
import type { Store } from '../src/store/store.ts';
import { TypedEmitter } from '../src/util/typed-emitter.ts';
import { POSTGRES, STORES, type StoreBackend } from './support/stores.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Collects what a feed hears. */
function heard(feed: ChangeFeed): UnitChanges[] {
  const changes: UnitChanges[] = [];
  feed.events.on('changes', (c) => void changes.push(c));
  return changes;
}

/** The sum of every delta heard. */
function summed(changes: readonly UnitChanges[]): Counters {
  const sum = zeroCounters();
  for (const { units } of changes)
    for (const { delta } of units) for (const k of Object.keys(sum) as (keyof Counters)[]) sum[k] += delta[k];
  return sum;
}

async function openOn(backend: StoreBackend): Promise<{ store: Store; url: string }> {
  const fresh = await backend.fresh();
  const store = await openStore(fresh.url);
  cleanups.push(
    () => fresh.dispose(),
    () => store.close(),
  );
  return { store, url: fresh.url };
}

async function feedOn(url: string, store: Store, presence?: { worker: boolean }): Promise<ChangeFeed> {
  const feed = await openFeed(url, store, { presence });
  cleanups.push(() => feed.close());
  return feed;
}

/** One message in each of `sessions` sessions (alice alone): one pending task per session. */
async function fill(store: Store, sessions: number): Promise<void> {
  for (let i = 0; i < sessions; i++) {
    await store.upsertSession({ workspaceId: 'default', id: `s${i}` }, ['alice'], () => [
      { peerId: 'alice', observeMe: null, observeOthers: false },
    ]);
    await store.appendMessages(
      { workspaceId: 'default', sessionId: `s${i}`, messages: [{ peerId: 'alice', content: 'x' }] },
      (snapshot) => planMessages(snapshot, [{ peerId: 'alice', content: 'x' }]),
    );
  }
}

describe.each(STORES)('change feed ($name)', (backend) => {
  it('every feed on a store hears each commit as stamped deltas, and never a rolled-back one', async () => {
    const { store, url } = await openOn(backend);
    const [a, b] = [await feedOn(url, store), await feedOn(url, store)];
    const [atA, atB] = [heard(a), heard(b)];
    await fill(store, 3);
    // A call that fails inside its transaction (no such session) writes nothing, so sends nothing.
    await expect(
      store.appendMessages(
        { workspaceId: 'default', sessionId: 'nope', messages: [{ peerId: 'alice', content: 'x' }] },
        (snapshot) => planMessages(snapshot, [{ peerId: 'alice', content: 'x' }]),
      ),
    ).rejects.toThrow();
    await fill(store, 1); // s0 again: the marker after which the rolled-back one would have arrived
    await Promise.all([a.sync(), b.sync()]);
    for (const changes of [atA, atB]) {
      expect(summed(changes)).toEqual({ ...zeroCounters(), pending: 4 });
      expect(new Set(changes.flatMap((c) => c.units.map((u) => u.key.sessionId)))).toEqual(
        new Set(['s0', 's1', 's2']),
      );
      expect(new Set(changes.map((c) => c.tx)).size).toBe(4); // one stamp per transaction
    }
    expect(a.connected && b.connected).toBe(true);
  });

  it('a transaction that changes a thousand units is heard whole (a notification holds 8,000 bytes)', async () => {
    const { store, url } = await openOn(backend);
    await fill(store, 1_000);
    const feed = await feedOn(url, store);
    const changes = heard(feed);
    const { cancelled } = await store.cancelPendingTasks({ workspaceId: 'default' });
    expect(cancelled).toBe(1_000);
    await feed.sync();
    expect(new Set(changes.map((c) => c.tx)).size).toBe(1);
    expect(changes.flatMap((c) => c.units)).toHaveLength(1_000);
    expect(summed(changes)).toEqual({ ...zeroCounters(), pending: -1_000, completed: 1_000, failed: 1_000 });
  });

  it('sync() resolves only once the commits made before it are heard', async () => {
    const { store, url } = await openOn(backend);
    const feed = await feedOn(url, store);
    const changes = heard(feed);
    for (let round = 1; round <= 5; round++) {
      await fill(store, 1);
      await feed.sync();
      expect(summed(changes).pending).toBe(round);
    }
  });

  it('counts the processes on the store that run a worker (none without a presence)', async () => {
    const { store, url } = await openOn(backend);
    expect((await feedOn(url, store)).workers).toBe(null);
    const api = await feedOn(url, store, { worker: false });
    expect(api.workers).toBe(0);
    const worker = await feedOn(url, store, { worker: true });
    // SQLite: this process is the only one; PostgreSQL: every feed that says it runs one.
    expect(worker.workers).toBe(1);
    await expect.poll(() => api.workers).toBe(backend.name === 'postgres' ? 1 : 0);
    if (backend.name !== 'postgres') return;
    const heard: (number | null)[] = [];
    api.events.on('workers', (n) => void heard.push(n));
    const second = await feedOn(url, store, { worker: true });
    await expect.poll(() => heard.at(-1)).toBe(2);
    await second.close();
    await worker.close();
    await expect.poll(() => heard.at(-1)).toBe(0);
    expect(api.workers).toBe(0);
  });
});

describe('change feed (postgres): a dropped listening connection', () => {
  it('reconnects, says resync, and hears again', async () => {
    const { store, url } = await openOn(POSTGRES);
    const feed = await feedOn(url, store, { worker: true });
    const schema = new URL(url).searchParams.get('schema');
    const resyncs: number[] = [];
    feed.events.on('resync', () => void resyncs.push(Date.now()));
    const changes = heard(feed);
    const admin = new pg.Client({ connectionString: inject('postgresUrl') });
    await admin.connect();
    cleanups.push(() => admin.end());
    // The listening connection names itself (whatever query it ran last: the heartbeat's).
    const killed = await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1',
      [`${presenceName(`deriver_changes_${schema}`, 'worker')}%`],
    );
    expect(killed.rowCount).toBe(1);
    await expect.poll(() => resyncs.length, { timeout: 10_000 }).toBe(1);
    expect(feed.connected).toBe(true);
    await fill(store, 1);
    await feed.sync();
    expect(summed(changes).pending).toBe(1);
  });

  it('refuses to start when it cannot listen, naming the database without its password', async () => {
    const url = new URL(inject('postgresUrl'));
    url.port = '1';
    url.password = 'secret';
    await expect(createPostgresFeed({ connectionString: url.toString(), channel: 'x' })).rejects.toThrow(
      /could not listen on PostgreSQL \(postgres:\/\/postgres:\*\*\*@/,
    );
  });
});

describe('waking workers', () => {
  it('wakes them for stored work (pending grew, nothing started) and after a resync, not otherwise', async () => {
    const events = new TypedEmitter<ChangeFeedEvents>();
    let wakes = 0;
    const stop = wakeOnStoredWork({ events }, () => void wakes++);
    cleanups.push(async () => stop());
    const key = {
      taskType: 'representation',
      workspaceId: 'w',
      sessionId: 's',
      observerId: 'a',
      senderId: 'a',
    } as const;
    const change = (delta: Partial<Counters>): UnitChanges => ({
      tx: '1',
      units: [{ unitId: 1, key, delta: { ...zeroCounters(), ...delta } }],
    });
    events.emit('changes', change({ pending: -1, running: 1 })); // a claim: nothing new to do
    events.emit('changes', change({ running: -1, pending: 1, retrying: 1 })); // a retry later: its own worker
    events.emit('changes', change({ running: -1, completed: 1 }));
    expect(wakes).toBe(0);
    events.emit('changes', change({ pending: 3 })); // new tasks
    expect(wakes).toBe(1);
    events.emit('resync', undefined);
    expect(wakes).toBe(2);
  });
});
