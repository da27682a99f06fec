/**
 * The periodic progress line: while tasks are pending or running, one `info` line every
 * `intervalMs` with the unfinished tasks over every workspace (read from the store), the tasks
 * this process finished, and its completions per second since the last line; one more line when
 * the queue becomes idle; nothing while it stays idle.
 *
 * States: `idle` (nothing pending or running: silent) -> `working` (a tick finds work: a line per
 * tick) -> `idle` (a tick finds none: a last line saying so). A tick whose read fails is skipped.
 * The timer, the clock and the read are injected.
 */
import { addCounters, type Counters, zeroCounters } from '../domain/counters.ts';
import type { SchedulerEvents } from '../scheduler/events.ts';
import type { Store } from '../store/store.ts';
import type { TypedEmitter } from '../util/typed-emitter.ts';

export interface ProgressLine {
  readonly pending: number;
  readonly retrying: number;
  readonly running: number;
  /** Tasks this process finished since it started (succeeded or failed for good). */
  readonly completed: number;
  /** The part of `completed` that failed for good. */
  readonly failed: number;
  /** Completions per second since the previous line. */
  readonly perSecond: number;
}

export interface ProgressLogOptions {
  /** The counts now (see `progressCounts`). */
  readonly read: () => Promise<Counters> | Counters;
  /** Writes one line (`idle` true on the line that says the queue went idle). */
  readonly write: (line: ProgressLine, idle: boolean) => void;
  /** @default 10000 */
  readonly intervalMs?: number;
  /** @default Date.now */
  readonly clock?: () => number;
}

/**
 * The progress line's counts: unfinished tasks of every process from the store (units with work
 * left only), finished ones as this process's scheduler reports them. `stop` stops counting.
 */
export function progressCounts(
  store: Pick<Store, 'liveCountsByTaskType'>,
  events: TypedEmitter<SchedulerEvents>,
): { read: () => Promise<Counters>; stop: () => void } {
  const finished = { completed: 0, failed: 0 };
  const offs = [
    events.on('task:completed', () => void finished.completed++),
    events.on('task:failed', () => {
      finished.completed++;
      finished.failed++;
    }),
  ];
  return {
    async read() {
      const sum = zeroCounters();
      for (const counters of (await store.liveCountsByTaskType()).values()) addCounters(sum, counters);
      return { ...sum, ...finished };
    },
    stop: () => {
      for (const off of offs) off();
    },
  };
}

export function startProgressLog(options: ProgressLogOptions): () => void {
  const clock = options.clock ?? Date.now;
  let state: 'idle' | 'working' = 'idle';
  let last = { completed: 0, at: clock() };
  let stopped = false;

  const report = (c: Counters): void => {
    if (stopped) return;
    const now = clock();
    const working = c.pending + c.running > 0;
    if (working || state === 'working') {
      const seconds = Math.max(0.001, (now - last.at) / 1000);
      options.write(
        {
          pending: c.pending,
          retrying: c.retrying,
          running: c.running,
          completed: c.completed,
          failed: c.failed,
          perSecond: Math.round((Math.max(0, c.completed - last.completed) / seconds) * 10) / 10,
        },
        !working,
      );
    }
    state = working ? 'working' : 'idle';
    last = { completed: c.completed, at: now };
  };
  const tick = (): void => {
    Promise.resolve()
      .then(options.read)
      .then(report, () => {}); // a failed read: the next tick reads again
  };
  const timer = setInterval(tick, options.intervalMs ?? 10_000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
