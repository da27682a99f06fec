/**
 * The work-unit scheduler: runs tasks of one work unit one at a time in creation order, and up to
 * `concurrency` units at once.
 *
 * ## The loop
 * All store calls go through one pump, one call at a time. When a handler finishes, its outcome is
 * queued; the pump then sends every queued outcome in one `settle` transaction (group commit),
 * which also starts each unit's next task under the same lease and claims more units for free
 * slots. So a busy scheduler costs about one commit per `concurrency` tasks.
 *
 * ## Claims
 * A claimed unit keeps running its tasks until it is drained, its head waits for a retry, or it has
 * run `claimBudget` tasks; then it is released and goes back in line behind older work (fairness).
 * Leases are renewed every `heartbeatMs`; a lease found lost aborts the attempt and the unit is
 * dropped, and the store refuses any outcome sent under the stale lease (fencing).
 *
 * ## Wake-ups
 * Enqueueing in this process wakes the pump at once. A timer covers retries that come due, and a
 * fallback poll every `pollMs` covers work and expired leases of other processes.
 *
 * ## Shutdown
 * `stop()` stops claiming, lets running attempts finish until the deadline, aborts the rest with
 * `ShutdownError` (put back as pending, no failure counted), and releases every claim.
 */

import type { WorkUnitKey } from '../domain/work-unit-key.ts';
import { LeaseLostError, PermanentTaskError, ShutdownError, TaskTimeoutError, toError } from '../errors.ts';
import type {
  ClaimedUnit,
  Lease,
  SettleItem,
  SettleResponse,
  TaskOutcome,
  TaskRecord,
} from '../store/store.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { SchedulerEvents } from './events.ts';
import {
  type ResolvedSchedulerOptions,
  resolveSchedulerOptions,
  retryDelay,
  type SchedulerOptions,
} from './options.ts';

export interface Scheduler {
  readonly events: TypedEmitter<SchedulerEvents>;
  readonly workerId: string;
  /** Units held by this process right now. */
  readonly activeUnits: number;
  /** Starts claiming work. Idempotent. */
  start(): void;
  /** Graceful shutdown; see the module comment. Resolves when every claim is released. */
  stop(options?: { deadlineMs?: number }): Promise<void>;
}

interface ActiveUnit {
  readonly lease: Lease;
  readonly key: WorkUnitKey;
  task: TaskRecord;
  /** Tasks this claim may still start after the current one. */
  budget: number;
  controller: AbortController;
  startedAt: number;
}

interface Finished {
  readonly unit: ActiveUnit;
  readonly outcome: TaskOutcome;
  readonly durationMs: number;
}

export function createScheduler(input: SchedulerOptions): Scheduler {
  const options: ResolvedSchedulerOptions = resolveSchedulerOptions(input);
  const { store, concurrency } = options;
  const events = new TypedEmitter<SchedulerEvents>();
  const active = new Map<number, ActiveUnit>();
  let finished: Finished[] = [];
  let claimWanted = false;
  let busy = false;
  let pumpScheduled = false;
  let started = false;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;
  let idleWaiters: (() => void)[] = [];
  let pollTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let wakeTimer: { at: number; timer: NodeJS.Timeout } | undefined;
  let unsubscribeEnqueued: (() => void) | undefined;
  let storeFailures = 0;

  const wantClaim = (): void => {
    if (stopping) return;
    claimWanted = true;
    schedulePump();
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
    if (stopping || (wakeTimer && wakeTimer.at <= at)) return;
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
    const free = stopping ? 0 : concurrency - active.size;
    const batch = finished;
    if (batch.length === 0 && !(claimWanted && free > 0)) {
      notifyIdle();
      return;
    }
    busy = true;
    finished = [];
    claimWanted = false;
    const items: SettleItem[] = batch.map(({ unit, outcome }) => ({
      lease: unit.lease,
      taskId: unit.task.id,
      outcome,
      continue: !stopping && unit.budget > 0,
    }));
    // Units that will certainly let go of their slot in this transaction can be replaced in it.
    const yielding = items.filter((item) => !item.continue).length;
    const claim = stopping ? 0 : Math.max(0, free + yielding);
    let response: SettleResponse;
    try {
      response =
        items.length > 0
          ? await store.settle({ owner: options.workerId, leaseMs: options.leaseMs, items, claim })
          : {
              results: [],
              claimed: await store.claim({ owner: options.workerId, leaseMs: options.leaseMs, max: claim }),
            };
      storeFailures = 0;
    } catch (error) {
      busy = false;
      finished = batch.concat(finished);
      if (items.length === 0) claimWanted = true;
      storeFailures++;
      events.emit('error', { error: toError(error), operation: items.length > 0 ? 'settle' : 'claim' });
      schedulePump(Math.min(5_000, 50 * 2 ** Math.min(storeFailures, 7)));
      return;
    }
    busy = false;
    batch.forEach((entry, i) => {
      const result = response.results[i];
      if (result) afterSettle(entry, result);
    });
    for (const claimed of response.claimed) adopt(claimed);
    if (response.claimed.length === claim && claim > 0) claimWanted = true;
    schedulePump();
  }

  function afterSettle(entry: Finished, result: SettleResponse['results'][number]): void {
    const { unit, outcome, durationMs } = entry;
    if (!result.accepted) {
      release(unit, 'lease-lost');
      return;
    }
    const task = unit.task;
    if (outcome.kind === 'succeeded') events.emit('task:completed', { task, durationMs });
    else if (outcome.kind === 'failed')
      events.emit('task:failed', { task, error: outcome.error, attempts: task.failures + 1, durationMs });
    else if (outcome.kind === 'retry') {
      events.emit('task:retrying', {
        task,
        error: outcome.error,
        attempt: task.failures + 1,
        runAt: outcome.runAt,
      });
      wakeAt(outcome.runAt);
    }
    if (result.next) {
      unit.task = result.next;
      unit.budget -= 1;
      launch(unit);
    } else {
      release(unit, result.released ?? 'yielded');
    }
  }

  function release(unit: ActiveUnit, reason: SchedulerEvents['unit:released']['reason']): void {
    active.delete(unit.lease.unitId);
    events.emit('unit:released', { lease: unit.lease, key: unit.key, reason });
    wantClaim();
  }

  function adopt(claimed: ClaimedUnit): void {
    const unit: ActiveUnit = {
      lease: claimed.lease,
      key: claimed.key,
      task: claimed.task,
      budget: options.claimBudget - 1,
      controller: new AbortController(),
      startedAt: 0,
    };
    active.set(claimed.lease.unitId, unit);
    events.emit('unit:claimed', { lease: claimed.lease, key: claimed.key });
    launch(unit);
  }

  function launch(unit: ActiveUnit): void {
    const controller = new AbortController();
    unit.controller = controller;
    unit.startedAt = performance.now();
    const task = unit.task;
    const attempt = task.failures + 1;
    events.emit('task:started', { task, attempt });
    const handler = options.handlers[task.type];
    const timeout = setTimeout(
      () => controller.abort(new TaskTimeoutError(options.timeoutMs)),
      options.timeoutMs,
    );
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    const run = (async () => {
      if (!handler) throw new PermanentTaskError(`no handler is registered for task type "${task.type}"`);
      await handler({ task, attempt, signal: controller.signal });
    })();
    run.catch(() => {}); // a handler that rejects after its timeout must not be an unhandled rejection
    Promise.race([run, aborted]).then(
      () => finish(unit, task, null),
      (error: unknown) => finish(unit, task, error ?? new Error('handler rejected without a reason')),
    );
    function finish(u: ActiveUnit, t: TaskRecord, error: unknown): void {
      clearTimeout(timeout);
      if (u.task !== t || !active.has(u.lease.unitId)) return;
      finished.push({ unit: u, outcome: outcomeOf(t, error), durationMs: performance.now() - u.startedAt });
      schedulePump();
    }
  }

  function outcomeOf(task: TaskRecord, error: unknown): TaskOutcome {
    if (error === null) return { kind: 'succeeded' };
    if (error instanceof ShutdownError || error instanceof LeaseLostError) return { kind: 'requeue' };
    const message = toError(error).message;
    const attempts = task.failures + 1;
    if (error instanceof PermanentTaskError || attempts >= options.maxAttempts)
      return { kind: 'failed', error: message };
    const delay = retryDelay(attempts, options.retryBaseMs, options.retryMaxMs, options.random);
    return { kind: 'retry', error: message, runAt: Date.now() + delay };
  }

  async function heartbeat(): Promise<void> {
    if (active.size === 0) return;
    const leases = [...active.values()].map((u) => u.lease);
    try {
      const lost = await store.renewLeases({ owner: options.workerId, leaseMs: options.leaseMs, leases });
      for (const lease of lost) active.get(lease.unitId)?.controller.abort(new LeaseLostError(lease.unitId));
    } catch (error) {
      events.emit('error', { error: toError(error), operation: 'renewLeases' });
    }
  }

  function notifyIdle(): void {
    if (active.size > 0 || finished.length > 0 || busy) return;
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
    start() {
      if (started || stopping) return;
      started = true;
      if (concurrency === 0) return;
      unsubscribeEnqueued = store.events.on('tasks:enqueued', wantClaim);
      pollTimer = setInterval(wantClaim, options.pollMs).unref();
      heartbeatTimer = setInterval(() => void heartbeat(), options.heartbeatMs).unref();
      wantClaim();
    },
    stop({ deadlineMs = options.shutdownDeadlineMs } = {}) {
      stopPromise ??= (async () => {
        stopping = true;
        claimWanted = false;
        unsubscribeEnqueued?.();
        clearInterval(pollTimer);
        if (wakeTimer) clearTimeout(wakeTimer.timer);
        let deadline: NodeJS.Timeout | undefined;
        await Promise.race([
          untilIdle(),
          new Promise<void>((resolve) => {
            deadline = setTimeout(resolve, deadlineMs);
          }),
        ]);
        clearTimeout(deadline);
        for (const unit of active.values()) unit.controller.abort(new ShutdownError());
        await untilIdle();
        clearInterval(heartbeatTimer);
      })();
      return stopPromise;
    },
  };
}
