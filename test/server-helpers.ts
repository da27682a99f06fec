import pino from 'pino';
import type { SchedulerOptions } from '../src/scheduler/options.ts';
import { type App, type StartOptions, startApp } from '../src/server/app.ts';
import { type Config, loadConfig } from '../src/server/config.ts';
import { tempDir } from './helpers.ts';

export interface TestServer {
  readonly app: App;
  readonly url: string;
  /** POSTs a GraphQL request over HTTP and returns the parsed JSON body. */
  http<T = unknown>(query: string, variables?: Record<string, unknown>): Promise<HttpResult<T>>;
  close(): Promise<void>;
}

export interface HttpResult<T> {
  status: number;
  data?: T | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[];
}

/** A real server on port 0 with a real SQLite file in a temp folder. */
export async function startTestServer(
  options: {
    config?: Partial<Config>;
    handlers?: SchedulerOptions['handlers'];
    scheduler?: Omit<SchedulerOptions, 'store' | 'handlers' | 'concurrency'>;
    server?: StartOptions['server'];
    retention?: StartOptions['retention'];
    /** @default silent */
    logger?: StartOptions['logger'];
  } = {},
): Promise<TestServer> {
  const temp = tempDir();
  const config: Config = {
    ...loadConfig({}),
    port: 0,
    databaseUrl: `file:${temp.path('api.db')}`,
    workerConcurrency: 4,
    demoTaskMs: 5,
    coalesceMs: 20,
    logLevel: 'silent',
    ...options.config,
  };
  const app = await startApp(config, {
    logger: options.logger ?? pino({ level: 'silent' }),
    handlers: options.handlers,
    scheduler: { pollMs: 50, ...options.scheduler },
    server: options.server,
    retention: options.retention,
  });
  return {
    app,
    url: app.url,
    async http<T>(query: string, variables?: Record<string, unknown>) {
      const response = await fetch(app.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
        body: JSON.stringify({ query, variables }),
      });
      return { status: response.status, ...((await response.json()) as object) } as HttpResult<T>;
    },
    async close() {
      await app.close({ deadlineMs: 0 });
      temp.remove();
    },
  };
}

/** A handler gate: tasks block until `open()`; `started` counts tasks that began. */
export function gate() {
  let release!: () => void;
  let opened = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started = 0;
  return {
    get started() {
      return started;
    },
    handler: async () => {
      started++;
      await opened;
    },
    open() {
      release();
    },
    close() {
      opened = new Promise<void>((resolve) => {
        release = resolve;
      });
    },
  };
}
