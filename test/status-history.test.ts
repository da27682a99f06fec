/**
 * The server's recent status history (`status-history.ts`) against its protocol: a workspace is
 * followed from its first change, sampled, its samples kept for the window; it is let go once quiet
 * and idle for the window; at most `maxWorkspaces` are followed; nothing is sampled while not live.
 */
import { expect, it } from 'vitest';
import { zeroCounters } from '../src/domain/counters.ts';
import type { WorkUnitKey } from '../src/domain/work-unit-key.ts';
import { type StatusCounts, toStatusCounts } from '../src/status/counts.ts';
import type { Liveness, StatusEngine, StatusEvents } from '../src/status/status-engine.ts';
import { createStatusHistory } from '../src/status/status-history.ts';
import { TypedEmitter } from '../src/util/typed-emitter.ts';

function fakeEngine() {
  const events = new TypedEmitter<StatusEvents>();
  const counts = new Map<string, StatusCounts>();
  const held = new Set<string>();
  let liveness: Liveness = { live: true, reason: null };
  const engine: Pick<StatusEngine, 'events' | 'watch' | 'progress' | 'liveness'> = {
    events,
    async watch(filter) {
      held.add(filter.workspaceId);
      return {
        counts: () => counts.get(filter.workspaceId) ?? toStatusCounts(zeroCounters()),
        sessions: () => [],
        release: () => held.delete(filter.workspaceId),
      };
    },
    progress: () => ({ throughputPerSecond: 0, estimatedSecondsToIdle: 0 }),
    liveness: () => liveness,
  };
  const change = (workspaceId: string, pending: number) => {
    counts.set(workspaceId, toStatusCounts({ ...zeroCounters(), pending }));
    const unit = { workspaceId, sessionId: 's', observerId: null, senderId: null, taskType: 'summary' };
    events.emit('status:changed', [unit as WorkUnitKey]);
  };
  return {
    engine,
    change,
    held,
    setLive: (live: boolean) => (liveness = { live, reason: live ? null : 'down' }),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

it('samples a workspace from its first change, keeps the window, and lets it go once quiet and idle', async () => {
  const { engine, change, held } = fakeEngine();
  let now = 1_000_000;
  const history = createStatusHistory({
    status: engine,
    sampleMs: 5_000,
    windowMs: 60_000,
    clock: () => now,
  });
  try {
    expect(history.samples('w')).toEqual([]);
    change('w', 3);
    await settle();
    expect(history.samples('w').map((s) => [s.at, s.pendingWorkUnits])).toEqual([[1_000_000, 3]]);
    for (let i = 1; i <= 12; i++) {
      now += 5_000;
      if (i === 6) change('w', 0);
      history.sample();
    }
    const samples = history.samples('w');
    // The first sample (60 s ago) has left the window; the rest stay, oldest first.
    expect(samples[0]?.at).toBe(1_005_000);
    expect(samples).toHaveLength(12);
    expect(samples.at(-1)?.pendingWorkUnits).toBe(0);
    // Let go once nothing changed for a window and all it keeps is idle, its watch released.
    now += 25_000;
    history.sample();
    expect(history.followed()).toBe(1); // its last change was 55 s ago
    now += 5_000;
    history.sample();
    expect(history.followed()).toBe(0);
    expect(held.has('w')).toBe(false);
    expect(history.samples('w')).toEqual([]);
    // A backlog nobody works on (no worker running) changes nothing, and stays on the chart.
    change('stuck', 7);
    await settle();
    for (let i = 0; i < 30; i++) {
      now += 5_000;
      history.sample();
    }
    expect(history.samples('stuck')).toHaveLength(12);
    expect(history.samples('stuck').every((s) => s.pendingWorkUnits === 7)).toBe(true);
  } finally {
    history.close();
  }
});

it('follows at most maxWorkspaces, the least recently changed giving its place once quiet; no sample while not live', async () => {
  const { engine, change, held, setLive } = fakeEngine();
  let now = 0;
  const history = createStatusHistory({
    status: engine,
    maxWorkspaces: 2,
    minQuietMs: 60_000,
    clock: () => now,
  });
  try {
    change('a', 1);
    change('b', 1);
    now += 30_000;
    change('a', 2); // a is now the most recent
    change('c', 1); // b changed 30 s ago: every place is busy, c is not followed
    await settle();
    expect([...held].sort()).toEqual(['a', 'b']);
    now += 30_000;
    change('c', 1); // b has been quiet for a minute: c takes its place
    await settle();
    expect(history.followed()).toBe(2);
    expect([...held].sort()).toEqual(['a', 'c']);
    expect(history.samples('b')).toEqual([]);
    const before = history.samples('a').length;
    setLive(false);
    now += 5_000;
    history.sample();
    expect(history.samples('a')).toHaveLength(before);
    setLive(true);
    history.sample();
    expect(history.samples('a')).toHaveLength(before + 1);
  } finally {
    history.close();
  }
  expect(held.size).toBe(0);
});
