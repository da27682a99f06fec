/**
 * The process `npm start` runs: the store `DATABASE_URL` names (embedded SQLite or PostgreSQL), the
 * status engine, live subscriptions, the scheduler with the built-in demo handler (or the given
 * handlers), and the HTTP/WebSocket server with its keys, limits and readiness checks.
 */
import pino, { type Logger } from 'pino';
import { createKeyring } from '../auth/keyring.ts';
import type { ChangeFeed } from '../feed/change-feed.ts';
import { bridgeFeed } from '../feed/feed-bridge.ts';
import { openFeed } from '../feed/open-feed.ts';
import { createLiveStatus, type LiveStatus } from '../live/live-status.ts';
import { createDemoHandler } from '../scheduler/demo-handler.ts';
import type { SchedulerOptions } from '../scheduler/options.ts';
import { createScheduler, type Scheduler } from '../scheduler/scheduler.ts';
import { createDeriver, type Deriver } from '../service/deriver.ts';
import { createStatusEngine, type StatusEngine } from '../status/status-engine.ts';
import { openStore } from '../store/open-store.ts';
import type { Store } from '../store/store.ts';
import type { Config } from './config.ts';
import { createDeriverServer, type DeriverServer, type DeriverServerOptions } from './create-server.ts';

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
  /** Task handlers; @default the demo handler (`config.demoTaskMs` per task) for every type */
  readonly handlers?: SchedulerOptions['handlers'];
  /** Scheduler options other than the store, handlers and concurrency. */
  readonly scheduler?: Omit<SchedulerOptions, 'store' | 'handlers' | 'concurrency'>;
  /** Server options other than those the configuration sets. */
  readonly server?: Omit<
    DeriverServerOptions,
    'services' | 'logger' | 'limits' | 'allowedOrigins' | 'introspection' | 'readiness' | 'serveApi'
  >;
}

export async function startApp(config: Config, options: StartOptions = {}): Promise<App> {
  const logger = options.logger ?? pino({ level: config.logLevel });
  const store = await openStore(config.databaseUrl);
  const status = await createStatusEngine({ store });
  const live = createLiveStatus({ status, windowMs: config.coalesceMs });
  const deriver = createDeriver({ store });
  const demo = createDemoHandler({ delayMs: config.demoTaskMs });
  const scheduler = createScheduler({
    ...options.scheduler,
    store,
    concurrency: config.workerConcurrency,
    handlers: options.handlers ?? { representation: demo, summary: demo },
  });
  scheduler.events.on('error', ({ error, operation }) =>
    logger.warn({ err: error, operation }, 'scheduler error'),
  );
  scheduler.events.on('task:failed', ({ task, error }) =>
    logger.warn({ taskId: task.id, error }, 'task failed'),
  );
  let feed: ChangeFeed;
  try {
    feed = await openFeed(config.databaseUrl, (error) =>
      logger.warn({ err: error }, 'change feed connection lost; reconnecting'),
    );
  } catch (error) {
    status.close();
    await store.close();
    throw error;
  }
  const unbridge = bridgeFeed({
    feed,
    store,
    status,
    origin: scheduler.workerId,
    wake: () => scheduler.wake(),
    onError: (error) => logger.warn({ err: error }, 'change feed error'),
  });
  const keys = config.authJwtSecret ? createKeyring({ secret: config.authJwtSecret }) : null;
  const server = createDeriverServer({
    ...options.server,
    services: { deriver, status, live, keys },
    logger,
    limits: config.limits,
    allowedOrigins: config.allowedOrigins,
    introspection: config.introspection,
    serveApi: config.serveApi,
    readiness: {
      store: () => store.probe(),
      feed: async () => {
        if (!feed.connected) throw new Error('the change feed is not connected (reconnecting)');
      },
    },
  });
  let url: string;
  try {
    url = await server.listen(config.port, config.host);
  } catch (error) {
    unbridge();
    await feed.close();
    status.close();
    await store.close();
    throw error;
  }
  scheduler.start();
  let closing: Promise<void> | undefined;
  return {
    url,
    store,
    feed,
    deriver,
    status,
    live,
    scheduler,
    server,
    close(closeOptions = {}) {
      closing ??= (async () => {
        await scheduler.stop(closeOptions);
        live.close();
        await server.close();
        unbridge();
        await feed.close();
        status.close();
        await store.close();
      })();
      return closing;
    },
  };
}
