/**
 * A work unit is the key `(taskType, workspaceId, sessionId, observerId, senderId)`. Tasks with the
 * same key run one at a time in creation order; different keys run in parallel. Summary units have
 * no observer or sender.
 */
export type TaskType = 'representation' | 'summary';

/** Every task type, in a fixed order. */
export const TASK_TYPES: readonly TaskType[] = ['representation', 'summary'];

export interface WorkUnitKey {
  readonly taskType: TaskType;
  readonly workspaceId: string;
  readonly sessionId: string;
  /** `null` for summary units. */
  readonly observerId: string | null;
  /** `null` for summary units. */
  readonly senderId: string | null;
  /**
   * The share of one observer in counts also kept for the unit as a whole (an attached Honcho's
   * task that lists several observers, `src/honcho/`): it feeds only filters naming an observer.
   * @default false
   */
  readonly perObserver?: boolean;
}

export function representationUnit(
  workspaceId: string,
  sessionId: string,
  observerId: string,
  senderId: string,
): WorkUnitKey {
  return { taskType: 'representation', workspaceId, sessionId, observerId, senderId };
}

export function summaryUnit(workspaceId: string, sessionId: string): WorkUnitKey {
  return { taskType: 'summary', workspaceId, sessionId, observerId: null, senderId: null };
}

/**
 * Canonical string form, unique per key. Ids cannot contain `/`, so the separator is unambiguous;
 * an absent observer or sender is written as an empty segment (ids are never empty).
 */
export function formatWorkUnitKey(key: WorkUnitKey): string {
  return `${key.taskType}/${key.workspaceId}/${key.sessionId}/${key.observerId ?? ''}/${key.senderId ?? ''}`;
}
