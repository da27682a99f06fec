import type { WorkUnitKey } from '../domain/work-unit-key.ts';
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
  /** A store call failed (the loop retries on its own), or a listener threw. */
  error: { readonly error: Error; readonly operation: string };
}
