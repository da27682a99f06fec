/**
 * A roll-up applies exactly the committed changes its store read did not include, whenever they
 * are heard: while the read is in flight (buffered), or after it (a late notification of a commit
 * the read saw is not counted twice). The status engine reads a filter once and keeps it within its
 * budget, watched filters whatever the budget. Pure: a fake store and feed.
 */
import { describe, expect, it } from 'vitest';
import { type CountersSnapshot, type UnitDelta, zeroCounters } from '../src/domain/counters.ts';
import type { ChangeFeedEvents } from '../src/feed/change-feed.ts';
import { Rollup } from '../src/status/rollup.ts';
import { createStatusEngine } from '../src/status/status-engine.ts';
import { filterKey } from '../src/status/status-filter.ts';
import { TypedEmitter } from '../src/util/typed-emitter.ts';
import { deferred } from './helpers.ts';

const unit = (sessionId: string, pending: number): UnitDelta => ({
  unitId: 1,
  key: { taskType: 'representation', workspaceId: 'w', sessionId, observerId: 'a', senderId: 'a' },
  delta: { ...zeroCounters(), pending },
});

/** A read that saw commits 1 to 5 (as a SQLite commit number would say), 10 pending in session a. */
const sums = (): CountersSnapshot => ({
  snapshot: { includes: (tx) => Number(tx) <= 5 },
  total: { ...zeroCounters(), pending: 10 },
  sessions: [['a', { ...zeroCounters(), pending: 10 }]],
});

describe('a roll-up', () => {
  it('applies changes heard while its read is in flight unless the read included them', async () => {
    const read = deferred<CountersSnapshot>();
    const rollup = new Rollup({ workspaceId: 'w' }, true, read.promise, () => {});
    expect(rollup.offer('4', unit('a', 1))).toBe(false); // buffered: the read may have it
    expect(rollup.offer('6', unit('b', 2))).toBe(false);
    read.resolve(sums());
    await rollup.ready;
    expect(rollup.counts().pendingWorkUnits).toBe(12); // 10 read + 2 from commit 6; commit 4 was in the read
    expect(rollup.sessions().map((s) => [s.sessionId, s.pendingWorkUnits])).toEqual([
      ['a', 10],
      ['b', 2],
    ]);
  });

  it('counts a late notification of a commit its read saw once, and a newer one at once', async () => {
    const rollup = new Rollup({ workspaceId: 'w' }, false, Promise.resolve(sums()), () => {});
    await rollup.ready;
    expect(rollup.offer('3', unit('a', 5))).toBe(false);
    expect(rollup.counts().pendingWorkUnits).toBe(10);
    expect(rollup.offer('7', unit('a', -1))).toBe(true);
    expect(rollup.counts().pendingWorkUnits).toBe(9);
  });

  it('is dropped when its read fails, and ignores changes once dropped', async () => {
    const rollup = new Rollup({ workspaceId: 'w' }, false, Promise.reject(new Error('down')), () => {});
    await expect(rollup.ready).rejects.toThrow('down');
    expect(rollup.mode).toBe('dropped');
    expect(rollup.offer('9', unit('a', 1))).toBe(false);
    expect(() => rollup.counts()).toThrow(/dropped/);
  });
});

describe('the status engine', () => {
  /** An engine on a fake store whose reads are counted and can be made to fail. */
  function engine(maxEntries: number) {
    const events = new TypedEmitter<ChangeFeedEvents>();
    const reads: string[] = [];
    let failing = false;
    const status = createStatusEngine({
      maxEntries,
      feed: { events, sync: async () => {}, workers: null },
      store: {
        async sumCounters(filter, { sessions }) {
          reads.push(filter.sessionId ?? filter.observerId ?? filter.workspaceId);
          if (failing) throw new Error('the store is down');
          return {
            snapshot: { includes: () => false },
            total: { ...zeroCounters(), pending: 1 },
            sessions: sessions ? [['a', { ...zeroCounters(), pending: 1 }]] : null,
          };
        },
      },
    });
    const fail = (on: boolean): void => {
      failing = on;
    };
    return { status, reads, events, fail };
  }
  const q = (sessionId: string) => ({ workspaceId: 'w', sessionId });

  it('answers a filter once from the store, then from memory, and drops the least recently used past its budget', async () => {
    const { status, reads } = engine(2);
    await status.get(q('a'));
    await status.get(q('a'));
    await status.get(q('b'));
    await status.get(q('a')); // a is now the most recently used
    await status.get(q('c')); // over budget: b goes
    expect(status.stats()).toMatchObject({ rollups: 2, entries: 2 });
    await status.get(q('a'));
    await status.get(q('b'));
    expect(reads).toEqual(['a', 'b', 'c', 'b']);
    status.close();
  });

  it('keeps watched filters whatever the budget, counts breakdown sessions as entries, and releases them', async () => {
    const { status, reads } = engine(0);
    const watch = await status.watch({ workspaceId: 'w' }, { sessions: true });
    await status.get(q('x'));
    expect(status.stats()).toMatchObject({ rollups: 1, entries: 2, pinned: 1 });
    expect(watch.sessions().map((s) => s.sessionId)).toEqual(['a']);
    watch.release();
    await status.get(q('y')); // eviction runs: nothing is watched any more
    expect(status.stats()).toMatchObject({ rollups: 0, entries: 0, pinned: 0 });
    expect(reads).toEqual(['w', 'x', 'y']);
    status.close();
  });

  it('a failed read answers with its error, keeps nothing, and the next question reads again', async () => {
    const { status, reads, fail } = engine(10);
    fail(true);
    await expect(status.get(q('a'))).rejects.toThrow('the store is down');
    await expect(status.watch(q('a'))).rejects.toThrow('the store is down');
    expect(status.stats()).toMatchObject({ rollups: 0, entries: 0, pinned: 0 });
    fail(false);
    expect((await status.get(q('a'))).pendingWorkUnits).toBe(1);
    expect(reads).toEqual(['a', 'a', 'a']);
    status.close();
  });

  it('after a resync, reads the watched filters again and forgets the others', async () => {
    const { status, reads, events } = engine(10);
    const watch = await status.watch(q('a'));
    await status.get(q('b'));
    const reloaded = new Promise((resolve) => status.events.on('status:reloaded', resolve));
    events.emit('resync', undefined);
    expect(await reloaded).toEqual([filterKey(q('a'))]);
    expect(status.stats()).toMatchObject({ rollups: 1, pinned: 1 });
    expect(watch.counts().pendingWorkUnits).toBe(1);
    expect(reads).toEqual(['a', 'b', 'a']);
    watch.release();
    status.close();
  });
});
