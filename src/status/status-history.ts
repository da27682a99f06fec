/**
 * The recent history of each workspace's status, kept in memory: what the dashboard's chart opens
 * with ("Last 10 minutes"), so a page opened after a run shows the run.
 *
 * ## Protocol
 * A workspace is followed from the first change heard in it (`status:changed`): a watch holds its
 * counts in memory, exact (`StatusEngine.watch`), and every `sampleMs` its backlog (pending, in
 * progress) and throughput are sampled; samples older than `windowMs` are dropped. A workspace is
 * let go (its watch released, its samples forgotten) once nothing changed in it for `windowMs` and
 * every sample it keeps is idle: its chart would be a flat zero line. At most `maxWorkspaces` are
 * followed; a new one then takes the place of the one changed least recently if that one has been
 * quiet for `minQuietMs`, else it is not followed (so that many busy workspaces cannot make each
 * change a store read: at most `maxWorkspaces` reads per `minQuietMs`). Memory is bounded by
 * `maxWorkspaces x windowMs / sampleMs` samples, whatever the history of the store; nothing is read
 * at start-up, so the history is what this instance heard since it started. No sample is taken
 * while the counts are not live (the chart shows a gap, not stale numbers).
 */
import type { Progress } from './completion-rate.ts';
import type { StatusCounts } from './counts.ts';
import type { StatusEngine, StatusWatch } from './status-engine.ts';

/** One sample of a workspace's status. */
export interface StatusSample {
  /** Epoch ms. */
  readonly at: number;
  readonly pendingWorkUnits: number;
  readonly inProgressWorkUnits: number;
  readonly throughputPerSecond: number;
}

export interface StatusHistory {
  /** The workspace's samples, oldest first (empty for one not followed). */
  samples(workspaceId: string): readonly StatusSample[];
  /** How often samples are taken and how far back they go, in ms. */
  readonly sampleMs: number;
  readonly windowMs: number;
  /** Takes one sample of every followed workspace now (the timer's work; tests call it). */
  sample(): void;
  /** Workspaces followed now. */
  followed(): number;
  close(): void;
}

export interface StatusHistoryOptions {
  readonly status: Pick<StatusEngine, 'events' | 'watch' | 'progress' | 'liveness'>;
  /** @default 5000 */
  readonly sampleMs?: number;
  /** @default 600000 (10 minutes) */
  readonly windowMs?: number;
  /** @default 100 */
  readonly maxWorkspaces?: number;
  /** How long the least recently changed workspace must have been quiet to give its place. @default 60000 */
  readonly minQuietMs?: number;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
}

interface Followed {
  /** The watch once read (a sample waits for it). */
  watch: StatusWatch | null;
  released: boolean;
  samples: StatusSample[];
  changedAt: number;
}

const idle = (s: StatusSample): boolean =>
  s.pendingWorkUnits === 0 && s.inProgressWorkUnits === 0 && s.throughputPerSecond === 0;

export function createStatusHistory(options: StatusHistoryOptions): StatusHistory {
  const { status } = options;
  const sampleMs = options.sampleMs ?? 5_000;
  const windowMs = options.windowMs ?? 600_000;
  const maxWorkspaces = options.maxWorkspaces ?? 100;
  const minQuietMs = options.minQuietMs ?? 60_000;
  const clock = options.clock ?? Date.now;
  /** Followed workspaces, changed least recently first. */
  const followed = new Map<string, Followed>();

  const letGo = (workspaceId: string, entry: Followed): void => {
    entry.released = true;
    entry.watch?.release();
    if (followed.get(workspaceId) === entry) followed.delete(workspaceId);
  };
  const take = (workspaceId: string, entry: Followed, now: number): void => {
    if (!entry.watch) return;
    const counts: StatusCounts = entry.watch.counts();
    const progress: Progress = status.progress({ workspaceId }, counts);
    entry.samples.push({
      at: now,
      pendingWorkUnits: counts.pendingWorkUnits,
      inProgressWorkUnits: counts.inProgressWorkUnits,
      throughputPerSecond: progress.throughputPerSecond,
    });
  };
  const follow = (workspaceId: string): void => {
    const now = clock();
    const known = followed.get(workspaceId);
    if (known) {
      known.changedAt = now;
      followed.delete(workspaceId); // to the end: changed most recently
      followed.set(workspaceId, known);
      return;
    }
    if (followed.size >= maxWorkspaces) {
      const [oldestId, oldest] = followed.entries().next().value as [string, Followed];
      if (now - oldest.changedAt < minQuietMs) return; // every place is busy
      letGo(oldestId, oldest);
    }
    const entry: Followed = { watch: null, released: false, samples: [], changedAt: now };
    followed.set(workspaceId, entry);
    status.watch({ workspaceId }).then(
      (watch) => {
        if (entry.released) return watch.release();
        entry.watch = watch;
        if (status.liveness().live) take(workspaceId, entry, clock()); // the run's first point
      },
      () => letGo(workspaceId, entry), // followed again with its next change
    );
  };

  const offChanged = status.events.on('status:changed', (units) => {
    let last: string | undefined;
    for (const unit of units) {
      if (unit.workspaceId === last) continue;
      last = unit.workspaceId;
      follow(unit.workspaceId);
    }
  });

  const sample = (): void => {
    const now = clock();
    const live = status.liveness().live;
    for (const [workspaceId, entry] of [...followed]) {
      if (live) take(workspaceId, entry, now);
      const from = entry.samples.findIndex((s) => s.at > now - windowMs);
      if (from !== 0) entry.samples.splice(0, from === -1 ? entry.samples.length : from);
      if (now - entry.changedAt >= windowMs && entry.samples.every(idle)) letGo(workspaceId, entry);
    }
  };
  const timer = setInterval(sample, sampleMs);
  timer.unref();

  return {
    sampleMs,
    windowMs,
    samples: (workspaceId) => followed.get(workspaceId)?.samples ?? [],
    sample,
    followed: () => followed.size,
    close() {
      clearInterval(timer);
      offChanged();
      for (const [workspaceId, entry] of [...followed]) letGo(workspaceId, entry);
    },
  };
}
