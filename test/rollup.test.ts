/**
 * A roll-up applies exactly the committed changes its store read did not include, whenever they
 * are heard: while the read is in flight (buffered), or after it (a late notification of a commit
 * the read saw is not counted twice). Pure: a fake read and snapshot.
 */
import { describe, expect, it } from 'vitest';
import { type CountersSnapshot, type UnitDelta, zeroCounters } from '../src/domain/counters.ts';
import { Rollup } from '../src/status/rollup.ts';
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
