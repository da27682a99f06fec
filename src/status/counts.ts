import type { Counters } from '../domain/counters.ts';

/** The public shape of a status (docs/api.md); field names keep Honcho's wording. */
export interface StatusCounts {
  readonly totalWorkUnits: number;
  readonly completedWorkUnits: number;
  readonly inProgressWorkUnits: number;
  readonly pendingWorkUnits: number;
  readonly failedWorkUnits: number;
  /** The part of `pendingWorkUnits` that failed before and waits to run again. */
  readonly retryingWorkUnits: number;
}

export interface SessionStatusCounts extends StatusCounts {
  readonly sessionId: string;
}

export function toStatusCounts(c: Counters): StatusCounts {
  return {
    totalWorkUnits: c.pending + c.running + c.completed,
    completedWorkUnits: c.completed,
    inProgressWorkUnits: c.running,
    pendingWorkUnits: c.pending,
    failedWorkUnits: c.failed,
    retryingWorkUnits: c.retrying,
  };
}

export function isIdle(c: StatusCounts): boolean {
  return c.pendingWorkUnits === 0 && c.inProgressWorkUnits === 0;
}

export function sameStatusCounts(a: StatusCounts, b: StatusCounts): boolean {
  return (
    a.totalWorkUnits === b.totalWorkUnits &&
    a.completedWorkUnits === b.completedWorkUnits &&
    a.inProgressWorkUnits === b.inProgressWorkUnits &&
    a.pendingWorkUnits === b.pendingWorkUnits &&
    a.failedWorkUnits === b.failedWorkUnits &&
    a.retryingWorkUnits === b.retryingWorkUnits
  );
}
