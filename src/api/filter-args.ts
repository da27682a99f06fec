/** Validated filter arguments as the services take them: absent and null mean "any". */
import { DEFAULT_WORKSPACE_ID } from '../domain/limits.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import type { StatusQuery } from '../status/status-filter.ts';
import type { UnitFilter } from '../store/store.ts';

/** The workspace an operation names; absent and null mean the default one. */
export const workspaceOf = (args: { workspaceId?: string | null }): string =>
  args.workspaceId ?? DEFAULT_WORKSPACE_ID;

/** Validated arguments of a status field, as StatusQuery (absent and null ids mean "any"). */
export function toQuery(args: {
  workspaceId?: string | null;
  sessionId?: string | null;
  observerId?: string | null;
  senderId?: string | null;
}): StatusQuery {
  return {
    workspaceId: workspaceOf(args),
    sessionId: args.sessionId ?? undefined,
    observerId: args.observerId ?? undefined,
    senderId: args.senderId ?? undefined,
  };
}

/** Validated arguments of a queue field, as UnitFilter. */
export const toUnitFilter = (
  args: Parameters<typeof toQuery>[0] & { taskType?: TaskType | null },
): UnitFilter => ({
  ...toQuery(args),
  taskType: args.taskType ?? undefined,
});
