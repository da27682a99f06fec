/**
 * The process `npm start` runs: the store `DATABASE_URL` names (embedded SQLite or PostgreSQL), the
 * status engine, live subscriptions, the scheduler with the given handlers (else HANDLER_URL's, else
 * the built-in demo handler), and the HTTP/WebSocket server with its keys, limits and readiness checks.
 */
import { hostname } from 'node:os';
import pino, { type Logger } from 'pino';
import { createKeyring } from '../auth/keyring.ts';
import type { TokenEstimator } from '../domain/task-generation.ts';
import { taskStuck } from '../domain/webhook-events.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import { ForbiddenError } from '../errors.ts';
import type { ChangeFeed } from '../feed/change-feed.ts';
import { openFeed } from '../feed/open-feed.ts';
import { wakeOnStoredWork } from '../feed/wake-on-stored-work.ts';
import { createDemoHandler } from '../handlers/demo-handler.ts';
import { createHttpHandler } from '../handlers/http-handler.ts';
import type { HonchoSource } from '../honcho/honcho-source.ts';
import { createLiveStatus, type LiveStatus } from '../live/live-status.ts';
import type { SchedulerOptions, TaskTypeLimits } from '../scheduler/options.ts';
import { createScheduler, type Scheduler } from '../scheduler/scheduler.ts';
import { createDerivationService } from '../service/derivation.ts';
import { createDeriver, type Deriver } from '../service/deriver.ts';
import { createQueueService, WORKSPACE_LIST_LIMIT } from '../service/queue.ts';
import { type RetentionOptions, startRetention } from '../service/retention.ts';
import { createStatusEngine, type StatusEngine } from '../status/status-engine.ts';
import { createStatusHistory } from '../status/status-history.ts';
import { openStore } from '../store/open-store.ts';
import type { Store } from '../store/store.ts';
import { ResourceStack } from '../util/resource-stack.ts';
import { createWebhookDispatcher } from '../webhooks/dispatcher.ts';
import { type Config, ConfigError } from './config.ts';
import { createDeriverServer, type DeriverServer, type DeriverServerOptions } from './create-server.ts';
import { createMetrics } from './metrics.ts';
import { progressCounts, startProgressLog } from './progress-log.ts';

export interface App {
  /** The GraphQL (and GraphiQL) URL. */
  readonly url: string;
  readonly store: Store;
  /** How this process hears the other processes on its store (and they hear it). */
  readonly feed: ChangeFeed;
  readonly deriver: Deriver;
  readonly status: StatusEngine;
  readonly live: LiveStatus;
  readonly scheduler: Scheduler;
  readonly server: DeriverServer;
  /** Graceful: stop claiming, finish or put back running tasks, close connections and the store. */
  close(options?: { deadlineMs?: number }): Promise<void>;
}

export interface StartOptions {
  /** @default pino at `config.logLevel` */
  readonly logger?: Logger;
  /**
   * Task handlers, one per task type. @default with `config.handlerUrl`, tasks POSTed there;
   * else the built-in demo handler (`config.demoTaskMs` per task)
   */
  readonly handlers?: SchedulerOptions['handlers'];
  /** Estimates a message's input tokens (batches, token rate limits). @default characters / 4 */
  readonly estimateTokens?: TokenEstimator;
  /** Retention passes' spacing, batch size and pause (`RETENTION` sets the period). */
  readonly retention?: Pick<RetentionOptions, 'intervalMs' | 'batchSize' | 'pauseMs'>;
  /** How often a progress line is logged while tasks run (workers only). @default 10000 */
  readonly progressIntervalMs?: number;
  /** Scheduler options other than the store, handlers and concurrency. */
  readonly scheduler?: Omit<SchedulerOptions, 'store' | 'handlers' | 'concurrency'>;
  /** Server options other than those the configuration sets. */
  readonly server?: Omit<
    DeriverServerOptions,
    'services' | 'logger' | 'limits' | 'allowedOrigins' | 'introspection' | 'readiness' | 'serveApi'
  >;
}

/**
 * This process's lease identity: `WORKER_ID`, else one a restart on the same machine and port gets
 * again (no other process can hold that port meanwhile); with port 0, the scheduler's random one.
 */
function workerIdOf(config: Config): string | undefined {
  if (config.workerId !== null) return config.workerId;
  return config.port === 0 ? undefined : `${hostname()}:${config.host}:${config.port}`;
}

/** Per task type, when a running task counts as stuck (`..._STUCK_AFTER`). */
function stuckAfterOf(config: Config): Partial<Record<TaskType, number>> {
  const stuck: Partial<Record<TaskType, number>> = {};
  for (const [type, limits] of Object.entries(config.taskTypes.limits) as [TaskType, TaskTypeLimits][]) {
    if (limits.stuckAfterMs !== undefined) stuck[type] = limits.stuckAfterMs;
  }
  return stuck;
}

/** The handlers this process runs: the given ones, HANDLER_URL's, or the demo's. */
function chooseHandlers(
  config: Config,
  given: SchedulerOptions['handlers'] | undefined,
): { handlers: SchedulerOptions['handlers']; close: () => void } {
  if (given && config.handlerUrl !== null) {
    throw new ConfigError(
      'HANDLER_URL is set and in-process handlers were given: use one or the other (unset HANDLER_URL to run your handlers)',
    );
  }
  if (given) return { handlers: given, close: () => {} };
  if (config.handlerUrl !== null) {
    const http = createHttpHandler({
      url: config.handlerUrl,
      secret: config.handlerSecret,
      maxSockets: Math.max(1, config.workerConcurrency),
    });
    return { handlers: { representation: http.handler, summary: http.handler }, close: http.close };
  }
  const demo = createDemoHandler({ delayMs: config.demoTaskMs });
  return { handlers: { representation: demo, summary: demo }, close: () => {} };
}

/**
 * The deriver of a process attached to a Honcho: waiting checks Honcho's sessions and peers; writes
 * are refused (messages go to Honcho, whose own deriver runs them).
 */
function attachedDeriver(own: Deriver, honcho: HonchoSource): Deriver {
  const refuse = async (): Promise<never> => {
    throw new ForbiddenError(
      'this instance serves the status of an attached Honcho: send workspaces, peers, sessions and messages to Honcho',
    );
  };
  return {
    ...own,
    upsertWorkspace: refuse,
    upsertPeer: refuse,
    upsertSession: refuse,
    removeSessionPeers: refuse,
    addMessages: refuse,
    assertFilterNamesKnown: (filter) => honcho.assertFilterNamesKnown(filter),
  };
}

export async function startApp(config: Config, options: StartOptions = {}): Promise<App> {
  const logger = options.logger ?? pino({ level: config.logLevel });
  // Everything acquired below is released in reverse order, on a failed start as on close.
  const resources = new ResourceStack();
  try {
    return await assemble(config, options, logger, resources);
  } catch (error) {
    await resources.close().catch(() => {});
    throw error;
  }
}

async function assemble(
  config: Config,
  options: StartOptions,
  logger: Logger,
  resources: ResourceStack,
): Promise<App> {
  const handling = resources.use(chooseHandlers(config, options.handlers), (h) => h.close());
  const store = resources.use(
    await openStore(config.databaseUrl, { batches: config.taskTypes.batches }),
    (s) => s.close(),
  );
  const scheduler = createScheduler({
    timeoutMs: config.taskTimeoutMs,
    maxAttempts: config.maxAttempts,
    leaseMs: config.leaseMs,
    workerId: workerIdOf(config),
    taskTypes: config.taskTypes.limits,
    ...options.scheduler,
    store,
    concurrency: config.workerConcurrency,
    handlers: handling.handlers,
  });
  // Listening before anything is read: a status read after this sees, or hears, every commit.
  const feed = resources.use(
    await openFeed(config.databaseUrl, store, {
      // It says whether this process runs a worker, and counts the processes on the store that do.
      presence: { worker: config.workerConcurrency > 0 },
      onError: (error) => logger.warn({ err: error }, 'change feed connection lost; reconnecting'),
    }),
    (f) => f.close(),
  );
  // Attached to a running Honcho: the status is its queue's, from the counters `attach` keeps.
  const honcho = config.honchoDatabaseUrl
    ? resources.use(
        await (await import('../honcho/honcho-source.ts')).openHonchoSource(config.honchoDatabaseUrl, {
          onFeedError: (error) =>
            logger.warn({ err: error }, "Honcho's change feed connection lost; reconnecting"),
          onFoldError: (error) =>
            logger.warn(
              { err: error },
              "could not fold Honcho's workspace changes into their totals; the next change heard tries again",
            ),
        }),
        (h) => h.close(),
      )
    : null;
  if (honcho && !honcho.workspaceTotals) {
    logger.warn(
      "this Honcho was attached by an earlier Deriver Live: a workspace's status is summed over its units (slower on a big queue); run `deriver-live honcho detach`, then `attach`, to keep per-workspace totals",
    );
  }
  const status = resources.use(
    createStatusEngine({
      store: honcho ?? store,
      feed: honcho?.feed ?? feed,
      maxEntries: config.statusCacheEntries,
    }),
    (s) => s.close(),
  );
  const history = resources.use(createStatusHistory({ status }), (h) => h.close());
  resources.defer(wakeOnStoredWork(feed, () => scheduler.wake()));
  const live = resources.use(createLiveStatus({ status, windowMs: config.coalesceMs }), (l) => l.close());
  const deriver = honcho
    ? attachedDeriver(createDeriver({ store }), honcho)
    : createDeriver({ store, estimateTokens: options.estimateTokens });
  scheduler.events.on('error', ({ error, operation }) =>
    logger.warn({ err: error, operation }, 'scheduler error'),
  );
  // On PostgreSQL, every process hears worker processes come and go: say when none is left.
  if (!honcho) {
    status.events.on('status:workers', (workers) => {
      if (workers === 0)
        logger.warn('no worker is running on this store now: tasks wait until a worker process starts');
      else logger.info({ workers }, 'worker processes on this store');
    });
  }
  scheduler.events.on('task:failed', ({ task, error }) =>
    logger.warn({ taskId: task.id, error }, 'task failed'),
  );
  scheduler.events.on('task:stuck', ({ task, runningMs }) =>
    logger.warn(
      {
        taskId: task.id,
        taskType: task.type,
        sessionId: task.key.sessionId,
        runningMs: Math.round(runningMs),
      },
      'task stuck: running longer than its STUCK_AFTER',
    ),
  );
  // One line per episode, not one per task: the tasks stay pending until the handler answers.
  scheduler.events.on('dispatch:paused', ({ error }) =>
    logger.error({ error }, 'the handler refuses this service: dispatch paused, tasks stay pending'),
  );
  scheduler.events.on('dispatch:resumed', ({ pausedMs }) =>
    logger.info({ pausedMs }, 'the handler accepts tasks again: dispatch resumed'),
  );
  // Webhook deliveries (docs/webhooks.md): processes that run workers deliver the outbox, and so
  // does a process attached to a Honcho (its events are relayed into the outbox below).
  const webhookAttempts = { delivered: 0, retried: 0, failed: 0 };
  const dispatcher =
    config.workerConcurrency > 0 || honcho
      ? resources.use(
          createWebhookDispatcher({
            store,
            timeoutMs: config.webhookTimeoutMs,
            allowPrivate: config.webhookAllowPrivate,
            onAttempt: (delivery, outcome) => {
              if (outcome.ok) webhookAttempts.delivered++;
              else if (outcome.retryAt !== null) webhookAttempts.retried++;
              else {
                webhookAttempts.failed++;
                logger.warn(
                  { deliveryId: delivery.id, url: delivery.url, type: delivery.type, error: outcome.error },
                  'webhook delivery given up after a day',
                );
              }
            },
            onError: (error) => logger.warn({ err: error }, 'webhook dispatcher store call failed'),
          }),
          (d) => d.stop(),
        )
      : undefined;
  if (honcho) {
    const { startHonchoEventRelay } = await import('../honcho/event-relay.ts');
    const relay = startHonchoEventRelay({
      source: honcho,
      store,
      onRelayed: () => dispatcher?.wake(),
      onError: (error) =>
        logger.warn({ err: error }, "could not move Honcho's webhook events; the next pass tries again"),
    });
    resources.defer(() => relay.stop());
  }
  if (dispatcher) {
    const wake = () => dispatcher.wake();
    resources.defer(store.events.on('webhooks:enqueued', wake));
    resources.defer(scheduler.events.on('task:failed', wake));
    resources.defer(
      scheduler.events.on('unit:released', ({ reason }) => {
        if (reason === 'drained') wake();
      }),
    );
  }
  scheduler.events.on('task:stuck', ({ task, runningMs }) => {
    store
      .enqueueWebhookEvent(taskStuck(task.key, task.id, runningMs, Date.now()))
      .catch((error: unknown) => logger.warn({ err: error }, 'could not write the task.stuck webhook event'));
  });
  const stuckAfterMs = stuckAfterOf(config);
  const keys = config.authJwtSecret ? createKeyring({ secret: config.authJwtSecret }) : null;
  // The server counts its WebSocket connections; it is created just below, before any scrape.
  let server: DeriverServer | undefined;
  const metrics = resources.use(
    createMetrics({
      status,
      store,
      live,
      schedulerEvents: scheduler.events,
      webSocketConnections: () => server?.webSockets.size ?? 0,
      dispatchPaused: () => scheduler.dispatch.paused,
      stuckAfterMs,
      webhookAttempts: () => webhookAttempts,
    }),
    (m) => m.close(),
  );
  server = createDeriverServer({
    ...options.server,
    services: {
      deriver,
      status,
      history,
      live,
      keys,
      queue: {
        ...createQueueService({ store, batches: config.taskTypes.batches, stuckAfterMs }),
        // Attached to a Honcho: the dashboard's picker lists Honcho's workspaces.
        ...(honcho ? { workspaces: () => honcho.listWorkspaces(WORKSPACE_LIST_LIMIT) } : {}),
      },
      derivation: createDerivationService({ store, status }),
      webhooks: { store, allowPrivate: config.webhookAllowPrivate, wake: () => dispatcher?.wake() },
    },
    logger,
    limits: config.limits,
    allowedOrigins: config.allowedOrigins,
    introspection: config.introspection,
    serveApi: config.serveApi,
    metrics,
    readiness: {
      store: () => store.probe(),
      feed: async () => {
        if (!feed.connected) throw new Error('the change feed is not connected (reconnecting)');
      },
      ...(honcho
        ? {
            honcho: async () => {
              await honcho.probe();
              if (!honcho.feed.connected)
                throw new Error("Honcho's change feed is not connected (reconnecting)");
            },
          }
        : {}),
      handler: async () => {
        const dispatch = scheduler.dispatch;
        if (dispatch.paused) {
          throw new Error(
            `dispatch paused since ${new Date(dispatch.since).toISOString()}, next try ${new Date(dispatch.until).toISOString()}: ${dispatch.error}`,
          );
        }
      },
    },
  });
  const url = await server.listen(config.port, config.host);
  const listening = server;
  resources.defer(() => listening.close());
  resources.defer(() => live.close()); // subscriptions end before the server closes
  scheduler.start();
  // Closing stops claiming first and lets running tasks finish (or puts them back).
  let deadlineMs: number | undefined;
  resources.defer(() => scheduler.stop({ deadlineMs }));
  if (config.workerConcurrency > 0) {
    const counts = progressCounts(store, scheduler.events);
    resources.defer(counts.stop);
    resources.defer(
      startProgressLog({
        read: counts.read,
        intervalMs: options.progressIntervalMs,
        write: (line, idle) => logger.info(line, idle ? 'queue idle' : 'progress'),
      }),
    );
  }
  // Processes that run workers prune; on PostgreSQL several may, each batch skipping rows another locks.
  if (config.workerConcurrency > 0 && config.retentionMs !== null) {
    const retention = startRetention({
      ...options.retention,
      store,
      retentionMs: config.retentionMs,
      onPruned: (rows) => logger.info({ rows }, 'pruned finished task rows (retention)'),
      onError: (error) => logger.warn({ err: error }, 'retention pass failed; the next one tries again'),
    });
    resources.defer(() => retention.stop());
  }
  return {
    url,
    store,
    feed,
    deriver,
    status,
    live,
    scheduler,
    server: listening,
    close(closeOptions = {}) {
      deadlineMs ??= closeOptions.deadlineMs;
      return resources.close();
    },
  };
}
