/**
 * The peers `bench:scheduler -- --store postgres` measures in the same run, on the same shape of
 * work (no-op tasks, `units` queues of `tasks / units` each, enqueued unit by unit, `concurrency`
 * at once), each timed from start until every job is done and recorded:
 * - graphile-worker on the same PostgreSQL server, tuned: local queue on, completion and failure
 *   batch delays 0, each work unit a named (serial) queue, so per-unit order is kept as ours is;
 * - BullMQ on Redis (127.0.0.1:6379), which keeps no per-unit order (one queue, `concurrency`).
 */
import { Queue, Worker } from 'bullmq';
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import { Redis } from 'ioredis';
import type { Probe } from './profile.ts';

const quiet = new Logger(() => () => {});

export interface Shape {
  readonly tasks: number;
  readonly units: number;
  readonly concurrency: number;
}

/** Jobs per second; with a probe, also the profile of the run (`bench:scheduler -- --profile`). */
export async function graphileWorker(
  connectionString: string,
  shape: Shape,
  probe?: Probe,
): Promise<{ perSecond: number; profile?: Record<string, unknown> }> {
  const schema = `graphile_worker_${process.pid}`;
  const utils = await makeWorkerUtils({ connectionString, schema, logger: quiet });
  await utils.migrate();
  const perUnit = Math.ceil(shape.tasks / shape.units);
  let batch: { identifier: string; payload: object; queueName: string }[] = [];
  let total = 0;
  for (let u = 0; u < shape.units; u++) {
    for (let i = 0; i < perUnit && total < shape.tasks; i++, total++) {
      batch.push({ identifier: 'noop', payload: {}, queueName: `unit-${u}` });
      if (batch.length === 1_000) {
        await utils.addJobs(batch);
        batch = [];
      }
    }
  }
  if (batch.length > 0) await utils.addJobs(batch);
  let done = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  await probe?.start();
  const start = performance.now();
  const runner = await run({
    connectionString,
    schema,
    concurrency: shape.concurrency,
    noHandleSignals: true,
    pollInterval: 1_000,
    logger: quiet,
    taskList: {
      noop: async () => {
        if (++done === total) allDone();
      },
    },
    preset: {
      worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
    },
  });
  await finished;
  await runner.stop(); // flushes the last batch of completions
  const ms = performance.now() - start;
  const profile = await probe?.stop(total);
  const [left] = (
    await utils.withPgClient((client) =>
      client.query(`SELECT count(*)::int AS n FROM ${schema}._private_jobs`),
    )
  ).rows as { n: number }[];
  await utils.withPgClient((client) => client.query(`DROP SCHEMA ${schema} CASCADE`));
  await utils.release();
  if (left?.n !== 0) throw new Error(`graphile-worker left ${left?.n} jobs behind`);
  return { perSecond: total / (ms / 1000), profile };
}

export async function bullmq(shape: Shape): Promise<number> {
  // Connections we create are ours to close: BullMQ closes only those it creates itself.
  const connections: Redis[] = [];
  const redis = () => {
    const connection = new Redis({ host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null });
    connections.push(connection);
    return connection;
  };
  const name = `deriver-bench-${process.pid}`;
  const queue = new Queue(name, { connection: redis() });
  await queue.obliterate({ force: true }).catch(() => {});
  for (let added = 0; added < shape.tasks; added += 1_000) {
    const n = Math.min(1_000, shape.tasks - added);
    await queue.addBulk(
      Array.from({ length: n }, (_, i) => ({
        name: 'noop',
        data: { unit: (added + i) % shape.units },
        opts: { removeOnComplete: true, removeOnFail: true },
      })),
    );
  }
  let done = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const start = performance.now();
  const worker = new Worker(name, async () => {}, { connection: redis(), concurrency: shape.concurrency });
  worker.on('completed', () => {
    if (++done === shape.tasks) allDone();
  });
  await finished;
  const ms = performance.now() - start;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await Promise.all(connections.map((connection) => connection.quit()));
  return shape.tasks / (ms / 1000);
}
