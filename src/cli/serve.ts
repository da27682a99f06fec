/**
 * `deriver-live start` (and `npm start`, `node dist/bundle/server.js`): configuration from the
 * environment and flags, one clear line on a bad value; graceful shutdown on SIGTERM or SIGINT,
 * and when the `npm` that started this process goes away (so a signal to `npm start` never leaves
 * a server behind).
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import pretty from 'pino-pretty';
import { startApp } from '../server/app.ts';
import { helpText, parseArgs } from '../server/cli.ts';
import { ConfigError, isLoopback, loadConfig } from '../server/config.ts';
import { parseStoreUrl } from '../store/open-store.ts';

/** Runs the server until a signal stops it (then exits the process). */
export async function serve(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv, process.env);
  if (args.kind === 'help') {
    process.stdout.write(helpText());
    process.exit(0);
  }
  if (args.kind === 'error') {
    process.stderr.write(`deriver-live: ${args.message}\n`);
    process.exit(1);
  }

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(args.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`deriver-live: invalid configuration: ${error.message}\n`);
    process.exit(1);
  }

  // People at a terminal get readable lines; log collectors get JSON, one object per line.
  const logger = process.stdout.isTTY
    ? pino(
        { level: config.logLevel },
        pretty({ sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
      )
    : pino({ level: config.logLevel });
  // The embedded store creates its folder when missing: say so rather than create it silently.
  const storeFolder = sqliteFolderToCreate(config.databaseUrl);
  const app = await startApp(config, { logger }).catch((error: unknown) => {
    process.stderr.write(
      `deriver-live: could not start: ${(error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ')}\n`,
    );
    process.exit(1);
  });
  // An API-only instance runs no deriver: it says where the tasks run instead, and when nothing
  // runs them (on SQLite no other process can open the file; on PostgreSQL the feed counts the
  // worker processes on the database).
  const sqlite = parseStoreUrl(config.databaseUrl).kind === 'sqlite';
  const workers = app.feed.workers;
  const noWorkerAnywhere = config.workerConcurrency === 0 && workers === 0;
  const handler =
    config.workerConcurrency === 0
      ? sqlite
        ? 'none: no worker is running (WORKER_CONCURRENCY=0, and a SQLite file serves this process only); tasks wait until it restarts with workers'
        : `none in this process (WORKER_CONCURRENCY=0: an API-only instance); ${
            workers === 0
              ? 'no worker process is running on this database now: tasks wait until one starts'
              : `tasks run in the ${workers === 1 ? 'worker process' : `${workers} worker processes`} on this database`
          }`
      : config.handlerUrl
        ? `tasks POSTed to ${config.handlerUrl}${config.handlerSecret ? ' (signed)' : ' (unsigned: set HANDLER_SECRET)'}`
        : `built-in demo handler, ${config.demoTaskMs} ms per task`;
  process.stdout.write(
    `Deriver Live is listening on ${app.url}\n` +
      `  dashboard: ${app.url.replace(/\/graphql$/, '/')} (open it in a browser)\n` +
      `  GraphiQL:  ${app.url}\n` +
      `  Honcho:    ${new URL(app.url).origin} (baseURL for Honcho's SDKs: status and messages)\n` +
      (config.honchoDatabaseUrl
        ? `  honcho:    serving the status of the Honcho at ${withoutPassword(config.honchoDatabaseUrl)} (attached; its own deriver runs the tasks)\n`
        : `  store:     ${withoutPassword(config.databaseUrl)}${storeFolder ? ` (created the folder ${storeFolder})` : ''}; workers: ${config.workerConcurrency}\n` +
          `  deriver:   ${handler}\n`) +
      `  auth:      ${config.authJwtSecret ? 'on (keys signed with AUTH_JWT_SECRET)' : 'off'}\n`,
  );
  if (noWorkerAnywhere && !config.honchoDatabaseUrl) {
    logger.warn(
      { workerConcurrency: 0 },
      sqlite
        ? 'no worker is running: with WORKER_CONCURRENCY=0 on a SQLite store no process runs tasks, so they wait; set WORKER_CONCURRENCY above 0, or use PostgreSQL with worker processes'
        : 'no worker is running on this database: tasks wait until a process with WORKER_CONCURRENCY above 0 starts on it',
    );
  }
  if (!config.authJwtSecret && !isLoopback(config.host)) {
    logger.warn(
      { host: config.host },
      'listening beyond this machine without authentication: anyone who can reach the port can read and write everything; set AUTH_JWT_SECRET',
    );
  }

  let stopping = false;
  function shutdown(reason: string): void {
    if (stopping) {
      logger.warn('second signal: exiting at once; leases will expire as after a crash');
      process.exit(1);
    }
    stopping = true;
    logger.info({ reason }, 'shutting down gracefully (send the signal again to exit at once)');
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => shutdown(signal));

  // Under `npm start`, a signal sent to npm may not reach this process (npm forwards it only to
  // the process it spawned, and not in every phase). When npm goes away, this process is re-parented:
  // treat that as the signal it was meant to get.
  if (process.env.npm_lifecycle_event) {
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent && !stopping) shutdown('npm, which started this process, exited');
    }, 250).unref();
  }
}

/** The store URL as it may be printed: a password in it is replaced by `***`. */
/** The folder an embedded store's file needs and does not have yet, if any. */
function sqliteFolderToCreate(databaseUrl: string): string | null {
  const location = parseStoreUrl(databaseUrl);
  if (location.kind !== 'sqlite' || location.path === ':memory:') return null;
  const folder = dirname(location.path);
  return existsSync(folder) ? null : folder;
}

function withoutPassword(url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) return url;
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}
