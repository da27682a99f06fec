/**
 * Prometheus metrics at `/metrics` (prom-client, one registry per app). Queue figures come from the
 * store (read at each scrape, from the units with work left: never a scan of history), so every
 * instance on one database reports the same ones; process figures (durations and retries of the
 * tasks this process ran, its subscriptions, status sums and WebSocket connections, Node's default
 * metrics) are its own. Finished tasks are counted where they ran
 * (`deriver_task_duration_seconds_count`): sum them over the instances.
 *
 * - `deriver_tasks{state,task_type}`: unfinished tasks by state, disjoint: `pending` (never
 *   started, or put back without failing), `retrying` (failed before, waiting to run again),
 *   `running`.
 * - `deriver_task_duration_seconds{task_type,outcome}`: attempts run here, by how they ended
 *   (`succeeded`, `failed` for good, `retried`).
 * - `deriver_task_retries_total{task_type}`: failed attempts run here that will be retried.
 * - `deriver_oldest_pending_seconds`: age of the oldest pending task (0 when none).
 * - `deriver_subscriptions`, `deriver_subscription_events_total`: live subscriptions on this
 *   process, and the status events delivered to them.
 * - `deriver_websocket_connections`: open WebSocket connections on this process.
 * - `deriver_status_sums{kind}`: status sums this process keeps (`filters`; `entries` against
 *   `STATUS_CACHE_ENTRIES`; `watched` by live subscriptions), `deriver_status_reads_total`: sums
 *   it read from the store (cold filters).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { zeroCounters } from '../domain/counters.ts';
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import type { LiveStatus } from '../live/live-status.ts';
import type { SchedulerEvents } from '../scheduler/events.ts';
import { stuckSince } from '../service/queue.ts';
import type { StatusEngine } from '../status/status-engine.ts';
import type { Store } from '../store/store.ts';
import type { TypedEmitter } from '../util/typed-emitter.ts';

export interface MetricsOptions {
  readonly status: Pick<StatusEngine, 'stats' | 'workers'>;
  readonly store: Pick<
    Store,
    'liveCountsByTaskType' | 'oldestPendingAt' | 'countStuckTasks' | 'pendingWebhookDeliveries'
  >;
  readonly live: LiveStatus;
  readonly schedulerEvents: TypedEmitter<SchedulerEvents>;
  /** Open WebSocket connections now. */
  readonly webSocketConnections: () => number;
  /** Whether dispatch is paused because the handler refuses this service (401/403). */
  readonly dispatchPaused: () => boolean;
  /** Per task type, when a running task counts as stuck. @default none */
  readonly stuckAfterMs?: Readonly<Partial<Record<TaskType, number>>>;
  /** Webhook delivery attempts this process made so far, by outcome. @default none */
  readonly webhookAttempts?: () => {
    readonly delivered: number;
    readonly retried: number;
    readonly failed: number;
  };
}

export interface Metrics {
  readonly contentType: string;
  /** The Prometheus text exposition of every metric, now. */
  render(): Promise<string>;
  /** Stops listening to the scheduler. */
  close(): void;
}

export function createMetrics(options: MetricsOptions): Metrics {
  const { status, store, live } = options;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: 'deriver_tasks',
    help: 'Unfinished tasks by state (pending, retrying, running: disjoint) and task type.',
    labelNames: ['state', 'task_type'] as const,
    registers: [registry],
    async collect() {
      const live = await store.liveCountsByTaskType();
      this.reset();
      for (const taskType of TASK_TYPES) {
        const c = live.get(taskType) ?? zeroCounters();
        this.set({ state: 'pending', task_type: taskType }, c.pending - c.retrying);
        this.set({ state: 'retrying', task_type: taskType }, c.retrying);
        this.set({ state: 'running', task_type: taskType }, c.running);
      }
    },
  });
  new Gauge({
    name: 'deriver_status_sums',
    help: 'Status sums kept in memory: filters, entries (a filter plus its breakdown sessions), watched filters.',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const stats = status.stats();
      this.set({ kind: 'filters' }, stats.rollups);
      this.set({ kind: 'entries' }, stats.entries);
      this.set({ kind: 'watched' }, stats.pinned);
    },
  });
  let readsSoFar = 0;
  new Counter({
    name: 'deriver_status_reads_total',
    help: 'Status sums read from the store (filters that were not in memory).',
    registers: [registry],
    collect() {
      const { reads } = status.stats();
      this.inc(reads - readsSoFar);
      readsSoFar = reads;
    },
  });
  const durations = new Histogram({
    name: 'deriver_task_duration_seconds',
    help: 'Duration of the task attempts this process ran, by task type and outcome.',
    labelNames: ['task_type', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'deriver_task_retries_total',
    help: 'Failed attempts this process ran that will be retried, by task type.',
    labelNames: ['task_type'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'deriver_oldest_pending_seconds',
    help: 'Age of the oldest pending task, in seconds (0 when none is pending).',
    registers: [registry],
    async collect() {
      const oldest = await store.oldestPendingAt();
      this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    },
  });
  new Gauge({
    name: 'deriver_subscriptions',
    help: 'Live status subscriptions on this process.',
    registers: [registry],
    collect() {
      this.set(live.stats().subscribers);
    },
  });
  let deliveredSoFar = 0;
  new Counter({
    name: 'deriver_subscription_events_total',
    help: 'Status events delivered to subscribers on this process.',
    registers: [registry],
    collect() {
      const delivered = live.stats().delivered;
      this.inc(delivered - deliveredSoFar);
      deliveredSoFar = delivered;
    },
  });
  new Gauge({
    name: 'deriver_websocket_connections',
    help: 'Open WebSocket connections on this process.',
    registers: [registry],
    collect() {
      this.set(options.webSocketConnections());
    },
  });

  new Gauge({
    name: 'deriver_worker_processes',
    help: 'Processes running workers for this store now (on PostgreSQL, every one on the database); 0: pending tasks wait. Absent when not known (attached to a Honcho).',
    registers: [registry],
    collect() {
      const workers = options.status.workers();
      if (workers === null) this.reset();
      else this.set(workers);
    },
  });

  new Gauge({
    name: 'deriver_dispatch_paused',
    help: 'Whether this process has paused claiming tasks because its handler refused them (HTTP 401/403): 1 paused, 0 not.',
    registers: [registry],
    collect() {
      this.set(options.dispatchPaused() ? 1 : 0);
    },
  });

  const stuckAfter = options.stuckAfterMs ?? {};
  if (Object.keys(stuckAfter).length > 0) {
    new Gauge({
      name: 'deriver_stuck_tasks',
      help: "Running tasks that started longer ago than their type's STUCK_AFTER (every instance), by task type.",
      labelNames: ['task_type'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [type, n] of await store.countStuckTasks(stuckSince(stuckAfter, Date.now())))
          this.set({ task_type: type }, n);
      },
    });
  }
  const stuckEvents = new Counter({
    name: 'deriver_task_stuck_total',
    help: "Task attempts this process ran that went past their type's STUCK_AFTER, by task type.",
    labelNames: ['task_type'] as const,
    registers: [registry],
  });

  new Gauge({
    name: 'deriver_webhook_deliveries_pending',
    help: 'Webhook deliveries not delivered yet (retrying with backoff), over every endpoint and instance.',
    registers: [registry],
    async collect() {
      this.set(await store.pendingWebhookDeliveries());
    },
  });
  const attemptsSoFar = { delivered: 0, retried: 0, failed: 0 };
  new Counter({
    name: 'deriver_webhook_attempts_total',
    help: 'Webhook delivery attempts this process made, by outcome (delivered, retried, failed: given up).',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      const now = options.webhookAttempts?.() ?? attemptsSoFar;
      for (const outcome of ['delivered', 'retried', 'failed'] as const) {
        this.inc({ outcome }, now[outcome] - attemptsSoFar[outcome]);
        attemptsSoFar[outcome] = now[outcome];
      }
    },
  });

  const events = options.schedulerEvents;
  const seconds = (ms: number) => ms / 1000;
  const offs = [
    events.on('task:completed', ({ task, durationMs }) =>
      durations.observe({ task_type: task.type, outcome: 'succeeded' }, seconds(durationMs)),
    ),
    events.on('task:failed', ({ task, durationMs }) =>
      durations.observe({ task_type: task.type, outcome: 'failed' }, seconds(durationMs)),
    ),
    events.on('task:stuck', ({ task }) => stuckEvents.inc({ task_type: task.type })),
    events.on('task:retrying', ({ task, durationMs }) => {
      durations.observe({ task_type: task.type, outcome: 'retried' }, seconds(durationMs));
      retries.inc({ task_type: task.type });
    }),
  ];

  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    close() {
      for (const off of offs) off();
    },
  };
}
