import { afterEach, describe, expect, it } from 'vitest';
import { formatWorkUnitKey } from '../src/domain/work-unit-key.ts';
import type { TaskContext } from '../src/scheduler/options.ts';
import { createHarness, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';
import { STORES } from './support/stores.ts';

describe.each(STORES)('scheduler-ordering ($name)', (backend) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
  });

  it('runs 200 units x 50 tasks FIFO per unit, one at a time per unit, 8 units in parallel', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    const UNITS = 200;
    const PER_UNIT = 50;
    for (let u = 0; u < UNITS; u++) {
      await h.deriver.upsertSession({ id: `s${u}`, peers: [{ peerId: `p${u}` }] });
      await sendMessages(h.deriver, { sessionId: `s${u}`, peerId: `p${u}`, count: PER_UNIT });
    }
    const seen = new Map<string, number[]>();
    const runningPerUnit = new Map<string, number>();
    let running = 0;
    let peak = 0;
    let overlaps = 0;
    const handler = async ({ task }: TaskContext) => {
      const unit = formatWorkUnitKey(task.key);
      const inUnit = (runningPerUnit.get(unit) ?? 0) + 1;
      runningPerUnit.set(unit, inUnit);
      if (inUnit > 1) overlaps++;
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
      running--;
      runningPerUnit.set(unit, inUnit - 1);
      const order = seen.get(unit) ?? [];
      order.push(task.payload.seq);
      seen.set(unit, order);
    };
    const idle = h.idle();
    h.startScheduler({
      handlers: { representation: handler, summary: unexpectedSummary },
      concurrency: 8,
      claimBudget: 5,
    });
    await idle;

    expect(overlaps).toBe(0);
    expect(peak).toBe(8);
    expect(seen.size).toBe(UNITS);
    for (const order of seen.values()) {
      expect(order).toEqual(Array.from({ length: PER_UNIT }, (_, i) => i + 1));
    }
    const status = await h.status.get({ workspaceId: 'default' });
    expect(status).toMatchObject({ totalWorkUnits: 10_000, completedWorkUnits: 10_000, failedWorkUnits: 0 });
    expect(await h.store.listTasks({ state: 'succeeded' })).toHaveLength(10_000);
  });

  it('claims the unit whose oldest pending task is oldest first, and a busy unit yields after its budget', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    await h.deriver.upsertSession({ id: 'busy', peers: [{ peerId: 'b' }] });
    await h.deriver.upsertSession({ id: 'late', peers: [{ peerId: 'l' }] });
    await sendMessages(h.deriver, { sessionId: 'busy', peerId: 'b', count: 5 });
    await sendMessages(h.deriver, { sessionId: 'late', peerId: 'l', count: 1 });
    await sendMessages(h.deriver, { sessionId: 'busy', peerId: 'b', count: 25 });
    const order: string[] = [];
    const idle = h.idle();
    h.startScheduler({
      handlers: {
        representation: ({ task }) => void order.push(`${task.key.sessionId}#${task.payload.seq}`),
        summary: unexpectedSummary,
      },
      concurrency: 1,
      claimBudget: 10,
    });
    await idle;
    // One slot. Without a budget the busy unit would run all 30 before late#1; with a budget of 10 it
    // yields, and late#1 (created before busy#6..30) is the oldest head.
    expect(order.slice(0, 11)).toEqual([...Array.from({ length: 10 }, (_, i) => `busy#${i + 1}`), 'late#1']);
    expect(order).toHaveLength(31);
  });

  it('starts a new task at once when a slot is free (enqueue wakes the worker, no poll)', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    const started = new Promise<number>((resolve) => {
      h!.startScheduler({
        handlers: { representation: ({ task }) => resolve(task.id), summary: unexpectedSummary },
        pollMs: 3_600_000,
      });
    });
    await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'a', content: 'x' }] });
    expect(await started).toBeGreaterThan(0);
  });
});
