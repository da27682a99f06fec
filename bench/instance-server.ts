/**
 * One server process for `cross-instance.ts`: `startApp` with the environment's configuration,
 * results stamped with `extensions.changedAt` (when this process's status engine saw the change), a
 * handler taking `TASK_MS` per task. Prints its URL; exits when its parent disconnects or on SIGTERM.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { startApp } from '../src/server/app.ts';
import { loadConfig } from '../src/server/config.ts';

const taskMs = Number(process.env.TASK_MS ?? 10);
const handler: TaskHandler = ({ signal }) => sleep(taskMs, undefined, { signal });
const app = await startApp(loadConfig(), {
  logger: pino({ level: 'silent' }),
  handlers: { representation: handler, summary: handler },
  server: { stampChanges: true, keepAliveMs: 0, connectionInitTimeoutMs: 60_000 },
});
process.stdout.write(`listening on ${app.url}\n`);
process.on('SIGTERM', () => void app.close({ deadlineMs: 0 }).then(() => process.exit(0)));
