/**
 * The work-unit scheduler: runs the tasks of one work unit one at a time in creation order, and up
 * to `concurrency` units at once.
 *
 * ## Claims and the pipeline
 * A claim leases one unit and hands over its head task (marked running) plus up to
 * `claimBudget - 1` tasks after it. The worker runs them one after another: when an attempt ends
 * well, the next task starts at once, without waiting for the store. Ended attempts are reported
 * in the background; one `settle` transaction carries the reports of every unit that moved since
 * the last one (group commit) and claims units for free slots. So a busy scheduler commits far
 * less often than once per task, and its latency does not include a commit.
 *
 * A unit stops at a retry (its head must wait), when its claimed tasks run out (fairness: it goes
 * back in line behind older heads), or at shutdown; its last report then releases it.
 *
 * ## Leases
 * Leases are renewed every `heartbeatMs`. A lease found lost aborts the running attempt; the store
 * refuses every report sent under a stale lease (fencing), so what that worker did is not recorded
 * and the tasks run again under the new holder (at-least-once). Events about attempts
 * (`task:completed`, `task:failed`, `task:retrying`) are emitted once the store has accepted them.
 *
 * A process started with a dead one's `workerId` recovers that one's leases at `start()`: their
 * interrupted tasks run again at once (or fail on their `maxInterruptions`-th interruption).
 *
 * ## Modes
 * `created` -> `recovering` (`start()`: this identity's old leases are being taken back; nothing is
 * claimed, since a claim committed before the recovery would be recovered as if it were old) ->
 * `running` (claims) -> `stopping` (`stop()`: no more claims; running attempts finish or are put
 * back). `stop()` from `created` or `recovering` goes straight to `stopping`.
 *
 * ## Wake-ups
 * Enqueueing in this process wakes the pump at once. A timer covers retries that come due, and a
 * fallback poll every `pollMs` covers work and expired leases of other processes.
 *
 * ## Refusals, holds and outcomes
 * A handler that throws `HandlerRefusedError` (the HTTP handler on 401/403) refuses the service,
 * not the task: the task is put back (no failure counted) and claiming pauses, 1 s the first time,
 * doubling up to a minute while attempts keep being refused. After each pause one unit is claimed
 * alone, as a probe; the first success ends the episode and claiming goes back to full width
 * (`refusals.ts`). A provider's rate limit holds a task type (`type-holds.ts`). What an attempt's
 * end means for each task is `outcomes.ts`.
 *
 * ## Shutdown
 * `stop()` stops claiming, lets running attempts finish until the deadline, aborts the rest with
 * `ShutdownError` (put back as pending, no failure counted), and releases every claim.
 */
import { TASK_TYPES, type TaskType, type WorkUnitKey } from '../domain/work-unit-key.ts';
import {
  HandlerRefusedError,
  LeaseLostError,
  RateLimitedError,
  ShutdownError,
  TaskTimeoutError,
  toError,
} from '../errors.ts';
import type {
  ClaimedUnit,
  Lease,
  ReportResult,
  SettleResponse,
  TaskOutcome,
  TaskRecord,
  UnitReport,
} from '../store/store.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { AttemptAbort } from './attempt-abort.ts';
import type { SchedulerEvents } from './events.ts';
import { type ResolvedSchedulerOptions, resolveSchedulerOptions, type SchedulerOptions } from './options.ts';
import { outcomesOf } from './outcomes.ts';
import { type DispatchState, Refusals } from './refusals.ts';
import { createTypeHolds } from './type-holds.ts';

export type { DispatchState } from './refusals.ts';

export interface Scheduler {
  readonly events: TypedEmitter<SchedulerEvents>;
  readonly workerId: string;
  /** Units held by this process right now. */
  readonly activeUnits: number;
  /** Starts claiming work. Idempotent. */
  start(): void;
  /** Looks for work now (another process enqueued some); nothing once stopping. */
  wake(): void;
  /** Whether claiming is paused because the handler refused (see "Refusals"), and why. */
  readonly dispatch: DispatchState;
  /** Graceful shutdown; see the module comment. Resolves when every claim is released. */
  stop(options?: { deadlineMs?: number }): Promise<void>;
}

interface ActiveUnit {
  readonly lease: Lease;
  readonly key: WorkUnitKey;
  /** Claimed tasks not started yet, in order. */
  readonly queue: TaskRecord[];
  /** The task running in this worker now (a batch's first). */
  current: TaskRecord | null;
  /** The batch running now, all in one handler call (`[current]` for a task alone). */
  running: readonly TaskRecord[];
  /** Its tasks are handed over as batches (`ClaimedUnit.batch`). */
  readonly batch: boolean;
  /** `task:stuck` fired for the call running now. */
  stuckReported: boolean;
  controller: AttemptAbort | null;
  /** The call its deadline times now: set once the call starts (after any rate-limit wait). */
  timed: AttemptAbort | null;
  /** One timer a unit, re-armed (`refresh`) at each call's start: it times out `timed`. */
  deadline: NodeJS.Timeout | null;
  startedAt: number;
  /** Attempts ended since the last report. */
  ended: Ended[];
  /** The lease was found lost: start nothing more. */
  lost: boolean;
}

interface Ended {
  readonly task: TaskRecord;
  readonly outcome: TaskOutcome;
  readonly durationMs: number;
}

export function createScheduler(input: SchedulerOptions): Scheduler {
  const options: ResolvedSchedulerOptions = resolveSchedulerOptions(input);
  const { store, concurrency } = options;
  // A listener that throws is reported like a store error (never to the loop); one on 'error' itself
  // goes to a process warning, so a faulty error listener cannot loop.
  const events: TypedEmitter<SchedulerEvents> = new TypedEmitter<SchedulerEvents>((error, event) =>
    event === 'error'
      ? process.emitWarning(`scheduler error listener threw: ${toError(error).message}`)
      : reportError(error, `listener for ${String(event)}`),
  );
  /** Store and listener errors; without an 'error' listener they still must not pass unseen. */
  function reportError(error: unknown, operation: string): void {
    if (events.hasListeners('error')) events.emit('error', { error: toError(error), operation });
    else process.emitWarning(`scheduler ${operation} failed: ${toError(error).message}`);
  }
  const active = new Map<number, ActiveUnit>();
  let claimWanted = false;
  let busy = false;
  let pumpScheduled = false;
  type Mode = 'created' | 'recovering' | 'running' | 'stopping';
  let mode: Mode = 'created';
  const enter = (next: Mode, from: readonly Mode[]): void => {
    if (!from.includes(mode)) throw new Error(`scheduler: ${mode} -> ${next} is not a transition`);
    mode = next;
  };
  let stopPromise: Promise<void> | undefined;
  let idleWaiters: (() => void)[] = [];
  let pollTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let wakeTimer: { at: number; timer: NodeJS.Timeout } | undefined;
  let unsubscribeEnqueued: (() => void) | undefined;
  let storeFailures = 0;
  let holdsTimer: NodeJS.Timeout | undefined;
  let stuckTimer: NodeJS.Timeout | undefined;
  const refusals = new Refusals();
  const holds = createTypeHolds({
    rateLimits: store.rateLimits,
    taskTypes: options.taskTypes,
    wakeAt,
    onRateLimited: (type, until, error) => events.emit('type:rate-limited', { type, until, error }),
    reportError,
  });
  const request = {
    owner: options.workerId,
    leaseMs: options.leaseMs,
    prefetch: options.claimBudget,
    maxInterruptions: options.maxInterruptions,
  };

  const wantClaim = (): void => {
    if (mode === 'stopping') return;
    claimWanted = true;
    if (mode === 'running') schedulePump(); // while recovering, remembered for when it is done
  };

  function schedulePump(delayMs = 0): void {
    if (pumpScheduled) return;
    pumpScheduled = true;
    const run = () => {
      pumpScheduled = false;
      void pump();
    };
    if (delayMs > 0) setTimeout(run, delayMs).unref();
    else setImmediate(run);
  }

  function wakeAt(at: number): void {
    if (mode === 'stopping' || (wakeTimer && wakeTimer.at <= at)) return;
    if (wakeTimer) clearTimeout(wakeTimer.timer);
    const timer = setTimeout(
      () => {
        wakeTimer = undefined;
        wantClaim();
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    wakeTimer = { at, timer };
  }

  async function pump(): Promise<void> {
    if (busy) return;
    const moved = [...active.values()].filter((u) => u.ended.length > 0 || u.current === null);
    const releasing = moved.filter((u) => u.current === null).length;
    const free = concurrency - active.size + releasing;
    // After a refusal's pause, one unit tries alone until an attempt succeeds (see "Refusals").
    const max =
      mode !== 'running' || refusals.paused(Date.now())
        ? 0
        : refusals.probing
          ? Math.min(free, active.size === releasing ? 1 : 0)
          : free;
    if (moved.length === 0 && !(claimWanted && max > 0)) {
      notifyIdle();
      return;
    }
    busy = true;
    claimWanted = false;
    const sent = moved.map((u) => {
      const ended = u.ended;
      u.ended = [];
      return ended;
    });
    const reports: UnitReport[] = moved.map((u, i) => ({
      lease: u.lease,
      attempts: (sent[i] ?? []).map(({ task, outcome }) => ({ taskId: task.id, outcome })),
      running: u.current?.id ?? null,
    }));
    let response: SettleResponse;
    try {
      response = await store.settle({
        ...request,
        reports,
        max,
        maxByType: max > 0 ? holds.claimable(runningOfType) : undefined,
      });
      storeFailures = 0;
    } catch (error) {
      busy = false;
      moved.forEach((u, i) => {
        u.ended = (sent[i] ?? []).concat(u.ended);
      });
      if (max > 0) claimWanted = true;
      storeFailures++;
      reportError(error, 'settle');
      schedulePump(Math.min(5_000, 50 * 2 ** Math.min(storeFailures, 7)));
      return;
    }
    busy = false;
    moved.forEach((unit, i) => {
      const result = response.results[i];
      if (result) afterReport(unit, sent[i] ?? [], result);
    });
    for (const claimed of response.claimed) adopt(claimed);
    if (response.claimed.length === max && max > 0) claimWanted = true;
    schedulePump();
  }

  function afterReport(unit: ActiveUnit, ended: readonly Ended[], result: ReportResult): void {
    if (result.kind === 'lease-lost') {
      unit.lost = true;
      unit.controller?.abort(new LeaseLostError(unit.lease.unitId));
      release(unit, 'lease-lost');
      return;
    }
    for (const { task, outcome, durationMs } of ended) {
      if (outcome.kind === 'succeeded') events.emit('task:completed', { task, durationMs });
      else if (outcome.kind === 'failed')
        events.emit('task:failed', { task, error: outcome.error, attempts: task.failures + 1, durationMs });
      else if (outcome.kind === 'retry') {
        events.emit('task:retrying', {
          task,
          error: outcome.error,
          attempt: task.failures + 1,
          delayMs: outcome.delayMs,
          durationMs,
        });
        wakeAt(Date.now() + outcome.delayMs);
      }
    }
    if (result.kind === 'released') release(unit, result.reason);
  }

  function release(unit: ActiveUnit, reason: SchedulerEvents['unit:released']['reason']): void {
    if (active.get(unit.lease.unitId) !== unit) return;
    active.delete(unit.lease.unitId);
    if (unit.deadline) clearTimeout(unit.deadline);
    events.emit('unit:released', { lease: unit.lease, key: unit.key, reason });
    wantClaim();
  }

  function adopt(claimed: ClaimedUnit): void {
    const [head, ...rest] = claimed.tasks;
    if (!head) return;
    const unit: ActiveUnit = {
      lease: claimed.lease,
      key: claimed.key,
      queue: claimed.batch ? [] : rest,
      current: head,
      running: [],
      batch: claimed.batch,
      stuckReported: false,
      controller: null,
      timed: null,
      deadline: null,
      startedAt: 0,
      ended: [],
      lost: false,
    };
    active.set(claimed.lease.unitId, unit);
    events.emit('unit:claimed', { lease: claimed.lease, key: claimed.key });
    launch(unit, claimed.batch ? claimed.tasks : [head]);
  }

  /** Runs `tasks` (one task, or a batch) in one handler call. */
  function launch(unit: ActiveUnit, tasks: readonly TaskRecord[]): void {
    const task = tasks[0];
    if (!task) return;
    const controller = new AttemptAbort((reason) => ended(reason ?? new Error('attempt aborted')));
    unit.current = task;
    unit.running = tasks;
    unit.controller = controller;
    unit.startedAt = performance.now();
    unit.stuckReported = true; // not while it waits for the rate limit: from its start, below
    const attempt = task.failures + 1;
    const handler = options.handlers[task.type];
    (async () => {
      // A rate limit or a provider's pause holds the call back; the lease is kept meanwhile.
      if (holds.needsAdmission(task.type))
        await holds.admitted(task.type, tokensOf(tasks), controller.signal);
      if (controller.aborted) throw controller.reason;
      unit.startedAt = performance.now();
      unit.stuckReported = false;
      for (const started of tasks)
        events.emit('task:started', { task: started, attempt: started.failures + 1 });
      unit.timed = controller;
      unit.deadline ??= setTimeout(
        () => unit.timed?.abort(new TaskTimeoutError(options.timeoutMs)),
        options.timeoutMs,
      );
      unit.deadline.refresh();
      return handler({
        task,
        tasks,
        batch: unit.batch,
        attempt,
        get signal() {
          return controller.signal;
        },
      });
    })().then(
      (result) => ended(null, result),
      (error: unknown) => ended(error ?? new Error('handler rejected without a reason')),
    );
    /** The call's end: its result, its error, or its abort, whichever comes first. */
    function ended(error: unknown, result?: unknown): void {
      if (unit.timed === controller) unit.timed = null;
      if (unit.current !== task) return;
      const durationMs = performance.now() - unit.startedAt;
      const outcomes = outcomesOf(tasks, unit.batch, error, result, options);
      attemptEnded(tasks, error, outcomes);
      tasks.forEach((t, i) => {
        unit.ended.push({ task: t, outcome: outcomes[i] ?? { kind: 'requeue' }, durationMs });
      });
      unit.current = null;
      unit.running = [];
      unit.controller = null;
      const outcome = outcomes.at(-1);
      const next = unit.queue[0];
      if (
        next &&
        mode !== 'stopping' &&
        !unit.lost &&
        (outcome?.kind === 'succeeded' || outcome?.kind === 'failed')
      ) {
        unit.queue.shift();
        launch(unit, [next]);
      }
      schedulePump();
    }
  }

  /** What an attempt's end means for the scheduler: a refusal, a rate limit, or a success. */
  function attemptEnded(
    tasks: readonly TaskRecord[],
    error: unknown,
    outcomes: readonly TaskOutcome[],
  ): void {
    const type = tasks[0]?.type;
    if (error instanceof RateLimitedError && type) holds.rateLimited(type, error);
    else if (error instanceof HandlerRefusedError) {
      const pause = refusals.refused(error.message, Date.now());
      if (pause?.first) events.emit('dispatch:paused', { error: error.message, until: pause.until });
      if (pause) wakeAt(pause.until);
    }
    if (outcomes.some((o) => o.kind === 'succeeded')) {
      const pausedMs = refusals.succeeded(Date.now());
      if (pausedMs !== null) events.emit('dispatch:resumed', { pausedMs });
    }
  }

  /** Fires `task:stuck` once for each call running longer than its type's `stuckAfterMs`. */
  function checkStuck(): void {
    const now = performance.now();
    for (const unit of active.values()) {
      const task = unit.current;
      const stuckAfterMs = task ? options.taskTypes[task.type]?.stuckAfterMs : undefined;
      if (!task || stuckAfterMs === undefined || unit.stuckReported || unit.startedAt === 0) continue;
      const runningMs = now - unit.startedAt;
      if (runningMs < stuckAfterMs) continue;
      unit.stuckReported = true;
      events.emit('task:stuck', { task, runningMs, stuckAfterMs });
    }
  }

  /** Units of `type` running a call here now. */
  function runningOfType(type: TaskType): number {
    let n = 0;
    for (const unit of active.values()) if (unit.key.taskType === type && unit.current !== null) n++;
    return n;
  }

  async function heartbeat(): Promise<void> {
    if (active.size === 0) return;
    const leases = [...active.values()].map((u) => u.lease);
    try {
      const lost = await store.renewLeases({ owner: options.workerId, leaseMs: options.leaseMs, leases });
      for (const lease of lost) {
        // The renewal was sent before its answer came: a unit released and claimed again meanwhile
        // holds a new lease, which this answer says nothing about.
        const unit = active.get(lease.unitId);
        if (!unit || unit.lease.token !== lease.token) continue;
        unit.lost = true;
        unit.controller?.abort(new LeaseLostError(lease.unitId));
      }
    } catch (error) {
      reportError(error, 'renewLeases');
    }
  }

  function notifyIdle(): void {
    if (active.size > 0 || busy) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  const untilIdle = () =>
    new Promise<void>((resolve) => {
      idleWaiters.push(resolve);
      notifyIdle();
    });

  return {
    events,
    workerId: options.workerId,
    get activeUnits() {
      return active.size;
    },
    get dispatch(): DispatchState {
      return refusals.state;
    },
    wake() {
      if (mode === 'recovering' || mode === 'running') wantClaim();
    },
    start() {
      if (mode !== 'created') return;
      enter('recovering', ['created']);
      if (concurrency === 0) {
        enter('running', ['recovering']);
        return;
      }
      unsubscribeEnqueued = store.events.on('tasks:enqueued', wantClaim);
      pollTimer = setInterval(wantClaim, options.pollMs).unref();
      holdsTimer = setInterval(() => void holds.readHolds(), options.pollMs).unref();
      const stuckAfter = TASK_TYPES.map((type) => options.taskTypes[type]?.stuckAfterMs ?? Infinity);
      if (Math.min(...stuckAfter) < Infinity)
        stuckTimer = setInterval(
          checkStuck,
          Math.max(10, Math.min(1_000, Math.min(...stuckAfter) / 4)),
        ).unref();
      heartbeatTimer = setInterval(() => void heartbeat(), options.heartbeatMs).unref();
      // Leases under this identity belong to a process that died (this one was not running):
      // take them back now instead of waiting for them to expire.
      store
        .recoverLeases({ owner: options.workerId, maxInterruptions: options.maxInterruptions })
        .catch((error: unknown) => reportError(error, 'recoverLeases'))
        .finally(() => {
          if (mode !== 'recovering') return; // stopped meanwhile
          enter('running', ['recovering']);
          wantClaim();
        });
    },
    stop({ deadlineMs = options.shutdownDeadlineMs } = {}) {
      stopPromise ??= (async () => {
        enter('stopping', ['created', 'recovering', 'running']);
        claimWanted = false;
        unsubscribeEnqueued?.();
        clearInterval(pollTimer);
        clearInterval(holdsTimer);
        clearInterval(stuckTimer);
        if (wakeTimer) clearTimeout(wakeTimer.timer);
        let deadline: NodeJS.Timeout | undefined;
        await Promise.race([
          untilIdle(),
          new Promise<void>((resolve) => {
            deadline = setTimeout(resolve, deadlineMs);
          }),
        ]);
        clearTimeout(deadline);
        for (const unit of active.values()) unit.controller?.abort(new ShutdownError());
        await untilIdle();
        clearInterval(heartbeatTimer);
      })();
      return stopPromise;
    },
  };
}

/** The tokens of a call: its tasks' estimates. */
const tokensOf = (tasks: readonly TaskRecord[]): number => tasks.reduce((sum, task) => sum + task.tokens, 0);
