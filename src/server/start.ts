/**
 * The public way to run Deriver Live inside your own program: the whole service (store, scheduler,
 * API) with your handlers, configured as `npm start` is.
 */
import type { Logger } from 'pino';
import type { TokenEstimator } from '../domain/task-generation.ts';
import type { SchedulerOptions } from '../scheduler/options.ts';
import { type App, startApp } from './app.ts';
import { type Config, loadConfig } from './config.ts';

export interface DeriverLiveOptions {
  /**
   * Your deriver: one handler per task type (`representation`, `summary`); a missing one is
   * refused at start. @default tasks POSTed to `HANDLER_URL` when set, else the built-in demo handler
   */
  readonly handlers?: SchedulerOptions['handlers'];
  /**
   * Settings over those read from `env`: the same ones `npm start` reads (`PORT` is `port`,
   * `DATABASE_URL` is `databaseUrl`, and so on; see `Config`).
   */
  readonly config?: Partial<Config>;
  /** Where the settings are read from, by the names of docs/configuration.md. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** @default pino at the configured level, JSON lines on stdout */
  readonly logger?: Logger;
  /** Scheduler tuning beyond the configuration (leases, retries, claim budget). */
  readonly scheduler?: Omit<SchedulerOptions, 'store' | 'handlers' | 'concurrency'>;
  /**
   * Estimates a message's input tokens, for batches and token rate limits (docs/deriver.md).
   * @default about characters / 4
   */
  readonly estimateTokens?: TokenEstimator;
}

/**
 * Starts the service: opens the store (migrating it), starts the scheduler with your handlers
 * and serves the API. Resolves once it listens (`app.url`); `app.close()` shuts down gracefully.
 * A bad setting or a missing handler rejects with one clear message, before anything runs.
 */
export function startDeriverLive(options: DeriverLiveOptions = {}): Promise<App> {
  const config: Config = { ...loadConfig(options.env ?? process.env), ...options.config };
  return startApp(config, {
    handlers: options.handlers,
    logger: options.logger,
    scheduler: options.scheduler,
    estimateTokens: options.estimateTokens,
  });
}
