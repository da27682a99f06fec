/**
 * The periodic progress line: while tasks are pending or running, one `info` line every
 * `intervalMs` with the counts over every workspace and the completions per second since the last
 * line; one more line when the queue becomes idle; nothing while it stays idle.
 *
 * States: `idle` (nothing pending or running: silent) -> `working` (a tick finds work: a line per
 * tick) -> `idle` (a tick finds none: a last line saying so). The timer and clock are injected.
 */
import { addCounters, type Counters, zeroCounters } from '../domain/counters.ts';
import type { StatusEngine } from '../status/status-engine.ts';

export interface ProgressLine {
  readonly pending: number;
  readonly retrying: number;
  readonly running: number;
  readonly completed: number;
  readonly failed: number;
  /** Completions per second since the previous line. */
  readonly perSecond: number;
}

export interface ProgressLogOptions {
  readonly status: Pick<StatusEngine, 'byTaskType'>;
  /** Writes one line (`idle` true on the line that says the queue went idle). */
  readonly write: (line: ProgressLine, idle: boolean) => void;
  /** @default 10000 */
  readonly intervalMs?: number;
  /** @default Date.now */
  readonly clock?: () => number;
}

export function startProgressLog(options: ProgressLogOptions): () => void {
  const clock = options.clock ?? Date.now;
  let state: 'idle' | 'working' = 'idle';
  let last = { completed: 0, at: clock() };

  const totals = (): Counters => {
    const sum = zeroCounters();
    for (const counters of options.status.byTaskType().values()) addCounters(sum, counters);
    return sum;
  };
  const tick = (): void => {
    const c = totals();
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
  const timer = setInterval(tick, options.intervalMs ?? 10_000);
  timer.unref();
  return () => clearInterval(timer);
}
