/** Row shapes both stores share (the same columns in SQLite and PostgreSQL), and their mapping. */
import type { UnitCounters } from '../domain/counters.ts';
import type { TaskType, WorkUnitKey } from '../domain/work-unit-key.ts';

export interface UnitRow {
  id: number;
  task_type: string;
  workspace_id: string;
  session_id: string;
  observer_id: string | null;
  sender_id: string | null;
  head_task_id: number | null;
  available_at: number;
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: number | null;
  pending: number;
  running: number;
  completed: number;
  failed: number;
  version: number;
}

export const keyOf = (row: UnitRow): WorkUnitKey => ({
  taskType: row.task_type as TaskType,
  workspaceId: row.workspace_id,
  sessionId: row.session_id,
  observerId: row.observer_id,
  senderId: row.sender_id,
});

export const unitCounters = (row: UnitRow): UnitCounters => ({
  unitId: row.id,
  key: keyOf(row),
  counters: { pending: row.pending, running: row.running, completed: row.completed, failed: row.failed },
  version: row.version,
});

/**
 * Where a released unit's head is, given the attempts its last report ended with: a task that was
 * put back (retry or requeue) is itself the head, with its retry time; after a finished task the
 * head is the next task by id (only the head runs, so all before it are finished).
 */
export type HeadAfterReport =
  | { readonly kind: 'task'; readonly id: number; readonly runAt: number }
  | { readonly kind: 'after'; readonly taskId: number }
  | { readonly kind: 'stored' };
