import type { TaskType, WorkUnitKey } from '../domain/work-unit-key.ts';
import type { Lease, ReleaseReason, TaskRecord } from '../store/store.ts';

/** Events of a scheduler. Listeners run synchronously; one that throws cannot break the loop. */
export interface SchedulerEvents {
  'unit:claimed': { readonly lease: Lease; readonly key: WorkUnitKey };
  'unit:released': {
    readonly lease: Lease;
    readonly key: WorkUnitKey;
    readonly reason: ReleaseReason | 'lease-lost';
  };
  'task:started': { readonly task: TaskRecord; readonly attempt: number };
  'task:completed': { readonly task: TaskRecord; readonly durationMs: number };
  'task:failed': {
    readonly task: TaskRecord;
    readonly error: string;
    readonly attempts: number;
    readonly durationMs: number;
  };
  'task:retrying': {
    readonly task: TaskRecord;
    readonly error: string;
    readonly attempt: number;
    /** The task runs again this long after the store recorded the failure. */
    readonly delayMs: number;
    readonly durationMs: number;
  };
  /**
   * The handler refused an attempt (`HandlerRefusedError`): nothing is claimed until `until`
   * (epoch ms), then one attempt tries again, with doubling pauses up to a minute. Emitted once
   * per episode; `dispatch:resumed` when an attempt succeeds again.
   */
  'dispatch:paused': { readonly error: string; readonly until: number };
  'dispatch:resumed': { readonly pausedMs: number };
  /** A task (a batch: its first) has run longer than its type's `stuckAfterMs`: once per attempt. */
  'task:stuck': { readonly task: TaskRecord; readonly runningMs: number; readonly stuckAfterMs: number };
  /**
   * A handler said its provider is rate limited (`RateLimitedError`, HTTP 429): nothing of `type`
   * is claimed or started here until `until` (epoch ms), and the store tells the other processes.
   */
  'type:rate-limited': { readonly type: TaskType; readonly until: number; readonly error: string };
  /** A store call failed (the loop retries on its own), or a listener threw. */
  error: { readonly error: Error; readonly operation: string };
}
