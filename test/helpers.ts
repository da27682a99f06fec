import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeFeed } from '../src/feed/change-feed.ts';
import { openFeed } from '../src/feed/open-feed.ts';
import { wakeOnStoredWork } from '../src/feed/wake-on-stored-work.ts';
import type { SchedulerOptions } from '../src/scheduler/options.ts';
import { createScheduler, type Scheduler } from '../src/scheduler/scheduler.ts';
import { createDeriver, type Deriver } from '../src/service/deriver.ts';
import { isIdle, type StatusCounts } from '../src/status/counts.ts';
import { createStatusEngine, type StatusEngine } from '../src/status/status-engine.ts';
import type { StatusQuery } from '../src/status/status-filter.ts';
import { openStore } from '../src/store/open-store.ts';
import type { BatchPolicies } from '../src/store/queue-plan.ts';
import type { Store, TaskRow } from '../src/store/store.ts';
import { SQLITE, type StoreBackend } from './support/stores.ts';

/** A fresh folder for database files; removed by the returned function. */
export function tempDir(): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'deriver-live-'));
  return {
    dir,
    path: (name) => join(dir, name),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface Harness {
  /** Where the store is (a `DATABASE_URL`): open it again there to restart. */
  readonly storeUrl: string;
  readonly store: Store;
  readonly status: StatusEngine;
  /** How the status engine hears the store's commits. */
  readonly feed: ChangeFeed;
  readonly deriver: Deriver;
  scheduler?: Scheduler;
  startScheduler(options: Omit<SchedulerOptions, 'store'>): Scheduler;
  /** Resolves when the filtered status has nothing pending or running. */
  idle(filter?: Partial<StatusQuery>): Promise<void>;
  close(): Promise<void>;
}

/**
 * Store, status engine and domain service on a real store: `storeUrl` (a `DATABASE_URL`), or a
 * fresh location of `backend` (removed on close), by default a SQLite file in a temp folder.
 */
export async function createHarness(
  options: {
    storeUrl?: string;
    backend?: StoreBackend;
    clock?: () => number;
    /** The status engine's budget of entries for filters nobody watches. */
    statusEntries?: number;
    /** Batched task types (the store's). */
    batches?: BatchPolicies;
  } = {},
): Promise<Harness> {
  const fresh = options.storeUrl ? undefined : await (options.backend ?? SQLITE).fresh();
  const storeUrl = options.storeUrl ?? fresh!.url;
  const store = await openStore(storeUrl, { clock: options.clock, batches: options.batches });
  const feed = await openFeed(storeUrl, store);
  const status = createStatusEngine({ store, feed, maxEntries: options.statusEntries });
  const unwake = wakeOnStoredWork(feed, () => harness.scheduler?.wake());
  const deriver = createDeriver({ store });
  const harness: Harness = {
    storeUrl,
    store,
    status,
    feed,
    deriver,
    startScheduler(schedulerOptions) {
      const scheduler = createScheduler({ store, ...schedulerOptions });
      // A store fault inside a test is worth seeing even when the test only looks at results.
      scheduler.events.on('error', ({ error, operation }) => {
        process.stderr.write(`scheduler ${operation} error: ${error.stack ?? error.message}\n`);
      });
      harness.scheduler = scheduler;
      scheduler.start();
      return scheduler;
    },
    async idle(filter = {}) {
      const query = { workspaceId: 'default', ...filter };
      // Held hot while waiting: each change is then a look-up in memory.
      const watch = await status.watch(query);
      try {
        await new Promise<void>((resolve) => {
          const check = () => {
            if (!isIdle(watch.counts())) return;
            off();
            resolve();
          };
          const off = status.events.on('status:changed', check);
          check();
        });
      } finally {
        watch.release();
      }
    },
    async close() {
      await harness.scheduler?.stop({ deadlineMs: 0 });
      unwake();
      status.close();
      await feed.close();
      await store.close();
      await fresh?.dispose();
    },
  };
  return harness;
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Adds `count` messages from `peerId` to a session, in calls of at most 100. */
export async function sendMessages(
  deriver: Deriver,
  args: { workspaceId?: string; sessionId: string; peerId: string; count: number },
): Promise<void> {
  for (let sent = 0; sent < args.count; sent += 100) {
    const n = Math.min(100, args.count - sent);
    await deriver.addMessages({
      workspaceId: args.workspaceId,
      sessionId: args.sessionId,
      messages: Array.from({ length: n }, (_, i) => ({ peerId: args.peerId, content: `m${sent + i + 1}` })),
    });
  }
}

/** The status counts of raw task rows, recounted the slow and obvious way. */
export const recount = (rows: readonly TaskRow[]): StatusCounts => ({
  totalWorkUnits: rows.length,
  completedWorkUnits: rows.filter((r) => r.state === 'succeeded' || r.state === 'failed').length,
  inProgressWorkUnits: rows.filter((r) => r.state === 'running').length,
  pendingWorkUnits: rows.filter((r) => r.state === 'pending').length,
  failedWorkUnits: rows.filter((r) => r.state === 'failed').length,
  retryingWorkUnits: rows.filter((r) => r.state === 'pending' && r.failures > 0).length,
});

/** The summary handler of tests that create no summary task: one that runs anyway fails loudly. */
export const unexpectedSummary = (): never => {
  throw new Error('this test creates no summary task, yet one ran');
};
