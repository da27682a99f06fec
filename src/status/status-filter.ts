import type { WorkUnitKey } from '../domain/work-unit-key.ts';

/** A validated status filter: fields combine with AND; an absent field matches everything. */
export interface StatusQuery {
  readonly workspaceId: string;
  readonly sessionId?: string | undefined;
  readonly observerId?: string | undefined;
  readonly senderId?: string | undefined;
}

/** Names what changed: the work unit whose counters moved. */
export type StatusChange = WorkUnitKey;

/** A stable string for a filter, usable as a map key (ids never contain a NUL). */
export function filterKey(filter: StatusQuery): string {
  return `${filter.workspaceId}\u0000${filter.sessionId ?? ''}\u0000${filter.observerId ?? ''}\u0000${filter.senderId ?? ''}`;
}

/**
 * The filters a work unit's counts feed: every subset of its session, observer and sender within
 * its workspace. A summary unit has no observer or sender, so only filters naming neither; a unit
 * with a sender and no observer (an attached Honcho's unit as a whole) only filters naming no
 * observer; an observer's share (`perObserver`) only filters naming that observer.
 */
export function filtersFedBy(unit: WorkUnitKey): StatusQuery[] {
  const filters: StatusQuery[] = [];
  for (let mask = 0; mask < 8; mask++) {
    const withObserver = (mask & 2) !== 0;
    const withSender = (mask & 4) !== 0;
    if (withObserver ? unit.observerId === null : unit.perObserver === true) continue;
    if (withSender && unit.senderId === null) continue;
    filters.push({
      workspaceId: unit.workspaceId,
      sessionId: mask & 1 ? unit.sessionId : undefined,
      observerId: withObserver ? (unit.observerId ?? undefined) : undefined,
      senderId: withSender ? (unit.senderId ?? undefined) : undefined,
    });
  }
  return filters;
}
