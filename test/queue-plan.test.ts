/**
 * The queue planner against a model: random claims (one task at a time or a whole batch), attempt
 * outcomes, partial reports, crashes and recoveries drive one unit whose tasks live in memory; the
 * planner's writes are applied with the same "expected state" checks the stores make, and after every
 * step the counters must equal a recount, finished tasks must be a prefix (tasks finish in order) and
 * a released unit's head must be its first unfinished task. At the end every task has finished.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addCounters, type Counters, zeroCounters } from '../src/domain/counters.ts';
import { claimLanes, type HeadAfterReport, planRecovery, planReport } from '../src/store/queue-plan.ts';
import type { Attempt, TaskOutcome } from '../src/store/store.ts';

type State = 'pending' | 'running' | 'succeeded' | 'failed';
interface Task {
  id: number;
  state: State;
  failures: number;
  interruptions: number;
  runAt: number;
  successes: number;
}

const OWNER = 'w1';
const MAX_INTERRUPTIONS = 3;

class Model {
  readonly tasks: Task[];
  counters: Counters;
  head: number | null;
  lease: { token: number; expiresAt: number } | null = null;
  running = 0;
  now = 1_000;
  constructor(n: number) {
    this.tasks = Array.from({ length: n }, (_, i) => ({
      id: i + 1,
      state: 'pending' as State,
      failures: 0,
      interruptions: 0,
      runAt: 0,
      successes: 0,
    }));
    this.counters = { ...zeroCounters(), pending: n };
    this.head = n > 0 ? 1 : null;
  }
  task(id: number): Task {
    const task = this.tasks[id - 1];
    if (!task) throw new Error(`no task ${id}`);
    return task;
  }
  expect(id: number, state: State): Task {
    const task = this.task(id);
    if (task.state !== state) throw new Error(`task ${id} is ${task.state}, not ${state}`);
    return task;
  }
  firstUnfinished(from: number): Task | undefined {
    return this.tasks.find((t) => t.id >= from && (t.state === 'pending' || t.state === 'running'));
  }
  /** Writes the head a release or recovery found, as the stores do. */
  settleHead(where: HeadAfterReport): void {
    this.head =
      where.kind === 'task'
        ? where.id
        : where.kind === 'from'
          ? (this.firstUnfinished(where.id)?.id ?? null)
          : null;
    this.lease = null;
  }
  check(): void {
    const recount = zeroCounters();
    for (const t of this.tasks) {
      if (t.state === 'pending') recount.pending++;
      else if (t.state === 'running') recount.running++;
      else {
        recount.completed++;
        if (t.state === 'failed') recount.failed++;
      }
    }
    expect({ ...this.counters, retrying: 0 }).toEqual(recount);
    const firstOpen = this.tasks.findIndex((t) => t.state === 'pending' || t.state === 'running');
    if (firstOpen >= 0) {
      expect(this.tasks.slice(firstOpen).every((t) => t.state === 'pending' || t.state === 'running')).toBe(
        true,
      );
    }
    if (!this.lease) {
      expect(this.counters.running).toBe(0);
      expect(this.head).toBe(firstOpen >= 0 ? firstOpen + 1 : null);
    }
  }
}

/** What a worker holds of a claimed unit. */
interface Worker {
  token: number;
  batch: boolean;
  /** Claimed tasks not reported yet, in order; the first `started` of them are running or ended. */
  queue: number[];
  ended: Attempt[];
  current: number | null;
}

type Step =
  | { kind: 'claim'; batch: boolean; take: number }
  | { kind: 'end'; outcome: 'succeeded' | 'failed' | 'retry' | 'requeue'; finished: number }
  | { kind: 'report' }
  | { kind: 'crash' }
  | { kind: 'time'; ms: number };

const steps = fc.array(
  fc.oneof(
    fc.record({
      kind: fc.constant('claim' as const),
      batch: fc.boolean(),
      take: fc.integer({ min: 1, max: 4 }),
    }),
    fc.record({
      kind: fc.constant('end' as const),
      outcome: fc.constantFrom('succeeded', 'succeeded', 'failed', 'retry', 'requeue') as fc.Arbitrary<
        'succeeded' | 'failed' | 'retry' | 'requeue'
      >,
      finished: fc.integer({ min: 0, max: 4 }),
    }),
    fc.record({ kind: fc.constant('report' as const) }),
    fc.record({ kind: fc.constant('crash' as const) }),
    fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 0, max: 500 }) }),
  ),
  { maxLength: 80 },
);

function outcomeOf(kind: 'succeeded' | 'failed' | 'retry' | 'requeue'): TaskOutcome {
  if (kind === 'succeeded') return { kind };
  if (kind === 'failed') return { kind, error: 'boom' };
  if (kind === 'retry') return { kind, error: 'again', delayMs: 100 };
  return { kind };
}

function applyReport(model: Model, worker: Worker, release: boolean): 'kept' | 'released' | 'lost' {
  const report = {
    lease: { unitId: 1, token: worker.token },
    attempts: worker.ended,
    running: release ? null : worker.current,
  };
  const plan = planReport(
    {
      lease_owner: model.lease ? OWNER : null,
      lease_token: model.lease?.token ?? 0,
      lease_expires_at: model.lease?.expiresAt ?? null,
      running: model.running,
      head_task_id: model.head,
    },
    report,
    OWNER,
    model.now,
  );
  if (plan.kind === 'lease-lost') return 'lost';
  for (const write of plan.writes) {
    if (write.op === 'start') {
      model.expect(write.id, 'pending').state = 'running';
      continue;
    }
    const task = model.expect(write.id, write.expected);
    if (write.op === 'finish') {
      task.state = write.state;
      if (write.state === 'succeeded') task.successes++;
    } else {
      task.state = 'pending';
      task.failures += write.failed;
      task.runAt = write.runAt;
    }
  }
  addCounters(model.counters, plan.delta);
  model.running = model.counters.running;
  worker.ended = [];
  if (plan.release === null) return 'kept';
  model.settleHead(plan.release);
  return 'released';
}

function recover(model: Model): void {
  if (!model.lease) return;
  const running = model.tasks.filter((t) => t.state === 'running');
  const plan = planRecovery(
    running.map((t) => ({ id: t.id, interruptions: t.interruptions })),
    model.head,
    MAX_INTERRUPTIONS,
  );
  for (const write of plan.writes) {
    const task = model.expect(write.id, 'running');
    task.interruptions++;
    task.state = write.op === 'fail-interrupted' ? 'failed' : 'pending';
  }
  addCounters(model.counters, plan.delta);
  model.running = 0;
  model.settleHead(plan.head);
}

function run(model: Model, script: readonly Step[]): void {
  let worker: Worker | null = null;
  let token = 0;
  for (const step of script) {
    if (step.kind === 'time') model.now += step.ms;
    else if (step.kind === 'crash') {
      worker = null;
      recover(model);
    } else if (step.kind === 'claim') {
      const head = model.head === null ? undefined : model.task(model.head);
      if (worker || model.lease || !head || head.runAt > model.now) continue;
      token++;
      model.lease = { token, expiresAt: model.now + 10_000 };
      const open = model.tasks.filter((t) => t.id >= head.id && t.state === 'pending').slice(0, step.take);
      // A task interrupted before is claimed alone (its start committed), as the stores do.
      const claimed = head.interruptions > 0 ? [head] : open;
      const started = step.batch ? claimed : [head];
      for (const t of started) t.state = 'running';
      model.counters.pending -= started.length;
      model.counters.running += started.length;
      model.running = started.length;
      worker = { token, batch: step.batch, queue: claimed.map((t) => t.id), ended: [], current: head.id };
    } else if (step.kind === 'end' && worker?.current != null) {
      if (worker.batch) {
        // The whole batch ends: the first `finished` succeed and the rest go back (partial), or all
        // share one outcome.
        const batch = worker.queue;
        const partial = step.outcome === 'succeeded' && step.finished < batch.length;
        worker.ended = batch.map((taskId, i) => ({
          taskId,
          outcome: partial
            ? i < step.finished
              ? { kind: 'succeeded' }
              : { kind: 'requeue' }
            : outcomeOf(step.outcome),
        }));
        worker.queue = [];
        worker.current = null;
      } else {
        worker.ended.push({ taskId: worker.current, outcome: outcomeOf(step.outcome) });
        worker.queue.shift();
        const goOn = step.outcome === 'succeeded' || step.outcome === 'failed';
        worker.current = goOn ? (worker.queue[0] ?? null) : null;
        if (!goOn) worker.queue = [];
      }
    } else if (step.kind === 'report' && worker) {
      const result = applyReport(model, worker, worker.current === null);
      if (result !== 'kept') worker = null;
    }
    model.check();
  }
  // Drain: finish whatever the worker holds, recover a crash, then run the rest to the end.
  if (worker) {
    if (worker.current !== null && worker.batch) {
      worker.ended = worker.queue.map((taskId) => ({ taskId, outcome: { kind: 'succeeded' } }));
    } else if (worker.current !== null) {
      worker.ended.push({ taskId: worker.current, outcome: { kind: 'succeeded' } });
    }
    worker.current = null;
    applyReport(model, worker, true);
    model.check();
  }
  for (let guard = 0; model.head !== null && guard < 1_000; guard++) {
    const head = model.task(model.head);
    model.now = Math.max(model.now, head.runAt);
    token++;
    model.lease = { token, expiresAt: model.now + 10_000 };
    head.state = 'running';
    model.counters.pending--;
    model.counters.running++;
    model.running = 1;
    applyReport(
      model,
      {
        token,
        batch: false,
        queue: [],
        ended: [{ taskId: head.id, outcome: { kind: 'succeeded' } }],
        current: null,
      },
      true,
    );
    model.check();
  }
}

describe('queue planner (property)', () => {
  it('keeps counters exact, finishes tasks in order and finds the head, whatever happens', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), steps, (n, script) => {
        const model = new Model(n);
        run(model, script);
        expect(model.tasks.every((t) => t.state === 'succeeded' || t.state === 'failed')).toBe(true);
        expect(model.counters).toEqual({ ...zeroCounters(), completed: n, failed: model.counters.failed });
        expect(model.head).toBe(null);
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses a report under a stale lease and one that does not fit the stored state', () => {
    const unit = { lease_owner: OWNER, lease_token: 2, lease_expires_at: 5_000, running: 1, head_task_id: 1 };
    const attempt = { taskId: 1, outcome: { kind: 'succeeded' } } as const;
    expect(
      planReport(unit, { lease: { unitId: 1, token: 1 }, attempts: [attempt], running: null }, OWNER, 1_000),
    ).toEqual({
      kind: 'lease-lost',
    });
    expect(
      planReport(unit, { lease: { unitId: 1, token: 2 }, attempts: [attempt], running: null }, OWNER, 6_000),
    ).toEqual({
      kind: 'lease-lost',
    });
    expect(() =>
      planReport(unit, { lease: { unitId: 1, token: 2 }, attempts: [], running: null }, OWNER, 1_000),
    ).toThrow(/released with its task still running/);
  });

  it('puts a whole batch back from its first task, and fails interrupted tasks only in order', () => {
    const unit = { lease_owner: OWNER, lease_token: 1, lease_expires_at: 5_000, running: 3, head_task_id: 4 };
    const retry = { kind: 'retry', error: 'slow down', delayMs: 50 } as const;
    const plan = planReport(
      unit,
      {
        lease: { unitId: 9, token: 1 },
        attempts: [4, 5, 6].map((taskId) => ({ taskId, outcome: retry })),
        running: null,
      },
      OWNER,
      1_000,
    );
    expect(plan.kind === 'apply' && plan.release).toEqual({ kind: 'task', id: 4, runAt: 1_050 });
    const recovery = planRecovery(
      [
        { id: 4, interruptions: 2 },
        { id: 5, interruptions: 0 },
        { id: 6, interruptions: 2 },
      ],
      4,
      3,
    );
    expect(recovery.writes.map((w) => w.op)).toEqual(['fail-interrupted', 'interrupt', 'interrupt']);
    expect(recovery.head).toEqual({ kind: 'from', id: 5 });
  });
});

describe('claim lanes', () => {
  const batch = { maxTasks: 4, maxTokens: 1_000, maxWaitMs: 60_000 };
  it('one lane for the plain types, one per batched or limited type; the first one turns with each claim', () => {
    const lanes = (turn: number) =>
      claimLanes(8, { summary: 2 }, { representation: batch }, turn).map((l) => [
        l.types,
        l.max,
        l.batch !== null,
      ]);
    expect(lanes(0)).toEqual([
      [['representation'], 8, true],
      [['summary'], 2, false],
    ]);
    expect(lanes(1)).toEqual([
      [['summary'], 2, false],
      [['representation'], 8, true],
    ]);
    expect(lanes(2)).toEqual(lanes(0));
    // No batch, no limit: one lane of every type, whatever the turn.
    expect(claimLanes(8, undefined, {}, 5).map((l) => l.types)).toEqual([['representation', 'summary']]);
    // A type with no free slot gets no lane.
    expect(claimLanes(8, { summary: 0 }, {}, 1).map((l) => l.types)).toEqual([['representation']]);
  });
});
