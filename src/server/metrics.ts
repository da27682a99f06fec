/**
 * Prometheus metrics at `/metrics` (prom-client, one registry per app). Queue figures come from the
 * status engine and the store, so every instance on one database reports the same ones; process
 * figures (durations and retries of the tasks this process ran, its subscriptions and WebSocket
 * connections, Node's default metrics) are its own.
 *
 * - `deriver_tasks{state,task_type}`: tasks by state, disjoint so they sum to the total:
 *   `pending` (never started, or put back without failing), `retrying` (failed before, waiting to
 *   run again), `running`, `succeeded`, `failed`.
 * - `deriver_task_duration_seconds{task_type,outcome}`: attempts run here, by how they ended
 *   (`succeeded`, `failed` for good, `retried`).
 * - `deriver_task_retries_total{task_type}`: failed attempts run here that will be retried.
 * - `deriver_oldest_pending_seconds`: age of the oldest pending task (0 when none).
 * - `deriver_subscriptions`, `deriver_subscription_events_total`: live subscriptions on this
 *   process, and the status events delivered to them.
 * - `deriver_websocket_connections`: open WebSocket connections on this process.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { LiveStatus } from '../live/live-status.ts';
import type { SchedulerEvents } from '../scheduler/events.ts';
import type { StatusEngine } from '../status/status-engine.ts';
import type { Store } from '../store/store.ts';
import type { TypedEmitter } from '../util/typed-emitter.ts';

export interface MetricsOptions {
  readonly status: StatusEngine;
  readonly store: Store;
  readonly live: LiveStatus;
  readonly schedulerEvents: TypedEmitter<SchedulerEvents>;
  /** Open WebSocket connections now. */
  readonly webSocketConnections: () => number;
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
    help: 'Tasks by state (pending, retrying, running, succeeded, failed: disjoint) and task type.',
    labelNames: ['state', 'task_type'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [taskType, c] of status.byTaskType()) {
        this.set({ state: 'pending', task_type: taskType }, c.pending - c.retrying);
        this.set({ state: 'retrying', task_type: taskType }, c.retrying);
        this.set({ state: 'running', task_type: taskType }, c.running);
        this.set({ state: 'succeeded', task_type: taskType }, c.completed - c.failed);
        this.set({ state: 'failed', task_type: taskType }, c.failed);
      }
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

  const events = options.schedulerEvents;
  const seconds = (ms: number) => ms / 1000;
  const offs = [
    events.on('task:completed', ({ task, durationMs }) =>
      durations.observe({ task_type: task.type, outcome: 'succeeded' }, seconds(durationMs)),
    ),
    events.on('task:failed', ({ task, durationMs }) =>
      durations.observe({ task_type: task.type, outcome: 'failed' }, seconds(durationMs)),
    ),
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
