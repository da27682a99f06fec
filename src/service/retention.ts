/**
 * Retention: finished task rows older than the retention period are deleted on a schedule, in
 * small batches (each its own short transaction, with a pause between them), so pruning never holds
 * the queue up. Counts are kept on the work units and never change.
 *
 * States: `waiting` (until the next pass, every `intervalMs`) -> `pruning` (batches of `batchSize`
 * until one comes back short) -> `waiting`. `stop()` ends it after the batch in flight.
 */
import type { Store } from '../store/store.ts';

export interface RetentionOptions {
  readonly store: Pick<Store, 'pruneFinished'>;
  /** Finished rows older than this are pruned. */
  readonly retentionMs: number;
  /** Time between passes. @default min(1 hour, retentionMs / 10), at least 1 s */
  readonly intervalMs?: number;
  /** Rows per batch. @default 1000 */
  readonly batchSize?: number;
  /** Pause between two batches of one pass. @default 10 */
  readonly pauseMs?: number;
  /** @default Date.now */
  readonly clock?: () => number;
  /** A pass pruned rows. */
  readonly onPruned?: (rows: number) => void;
  /** A batch failed (the next pass tries again). */
  readonly onError?: (error: unknown) => void;
}

export interface Retention {
  /** Stops the schedule; resolves after the batch in flight. */
  stop(): Promise<void>;
}

export function startRetention(options: RetentionOptions): Retention {
  const clock = options.clock ?? Date.now;
  const batchSize = options.batchSize ?? 1_000;
  const pauseMs = options.pauseMs ?? 10;
  const intervalMs = options.intervalMs ?? Math.max(1_000, Math.min(3_600_000, options.retentionMs / 10));
  let stopped = false;
  let running: Promise<number> | null = null;

  const pass = async (): Promise<number> => {
    const before = clock() - options.retentionMs;
    let total = 0;
    while (!stopped) {
      const pruned = await options.store.pruneFinished(before, batchSize);
      total += pruned;
      if (pruned < batchSize) break;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    if (total > 0) options.onPruned?.(total);
    return total;
  };
  const prune = (): Promise<number> => {
    running ??= pass().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = setInterval(() => {
    prune().catch((error: unknown) => options.onError?.(error));
  }, intervalMs);
  timer.unref();

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
