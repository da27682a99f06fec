/** Row shapes both stores share (the same columns in SQLite and PostgreSQL), and their mapping. */

import { addCounters, type Counters, zeroCounters } from '../domain/counters.ts';
import type { Message } from '../domain/model.ts';
import { summaryRangeOf, type TaskPayload } from '../domain/task-generation.ts';
import type { TaskType, WorkUnitKey } from '../domain/work-unit-key.ts';
import { jsonColumn } from './attributes.ts';
import type { FailedTask, ReleaseReason, TaskRecord, TaskRow, TaskState, WorkUnitInfo } from './store.ts';

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
  retrying: number;
  claimed_through: number | null;
  version: number;
}

/** The key columns of a unit row. */
export type KeyColumns = Pick<
  UnitRow,
  'task_type' | 'workspace_id' | 'session_id' | 'observer_id' | 'sender_id'
>;

export const keyOf = (row: KeyColumns): WorkUnitKey => ({
  taskType: row.task_type as TaskType,
  workspaceId: row.workspace_id,
  sessionId: row.session_id,
  observerId: row.observer_id,
  senderId: row.sender_id,
});

/** The counters of a row that has them (missing ones, as in a live count, are 0). */
export const countersOf = (row: Partial<Counters>): Counters => ({
  pending: Number(row.pending ?? 0),
  running: Number(row.running ?? 0),
  completed: Number(row.completed ?? 0),
  failed: Number(row.failed ?? 0),
  retrying: Number(row.retrying ?? 0),
});

/** The sum of rows' counters. */
export function sumOf(rows: readonly Partial<Counters>[]): Counters {
  const total = zeroCounters();
  for (const row of rows) addCounters(total, countersOf(row));
  return total;
}

/** A unit's head as a release records it. */
export interface Head {
  readonly id: number;
  readonly run_at: number;
  /** Failed attempts so far: more than 0 means the head waits for a retry. */
  readonly failures: number;
  readonly created_at: number;
}

/**
 * The unit columns a release writes from its head (none: drained) and when it may be claimed
 * (`availableAt` of `queue-plan.ts`: the head's retry time, or later while its batch fills).
 */
export const headColumns = (head: Head | undefined, availableAt = head?.run_at ?? 0) => ({
  headId: head?.id ?? null,
  availableAt: head ? availableAt : 0,
  headRetrying: head !== undefined && head.failures > 0 ? 1 : 0,
});

/** Why a unit was released (no head: drained; claimable later than now: waiting for a retry or its batch). */
export function releaseReason(head: Head | undefined, availableAt: number, now: number): ReleaseReason {
  return !head ? 'drained' : availableAt > now ? 'waiting' : 'yielded';
}

/**
 * Message ids as the API gives them (decimal strings) as numbers; an id that is not one cannot
 * name a message and is left out (the read then reports it as not found).
 */
export const messageIdsOf = (ids: readonly string[]): number[] =>
  ids.filter((id) => /^\d{1,15}$/.test(id)).map(Number);

export interface MessageRow {
  id: number;
  peer_id: string;
  seq: number;
  content: string;
  created_at: number;
  /** JSON text (SQLite), parsed jsonb (PostgreSQL), or NULL for none. */
  metadata: unknown;
}

export const messageOf = (row: MessageRow, workspaceId: string, sessionId: string): Message => ({
  id: String(row.id),
  workspaceId,
  sessionId,
  peerId: row.peer_id,
  seq: row.seq,
  content: row.content,
  createdAt: row.created_at,
  metadata: jsonColumn(row.metadata),
});

/** A task row as both stores read it; `payload` is JSON text in SQLite and parsed in PostgreSQL. */
export interface TaskRowOf<P> {
  id: number;
  unit_id: number;
  message_id: number | null;
  state: string;
  payload: P;
  runs: number;
  failures: number;
  last_error: string | null;
  created_at: number;
  tokens: number;
}

const messageIdOf = (id: number | null): string | null => (id === null ? null : String(id));

/**
 * The messages a task covers, as a store looks them up: a representation task's message by id, a
 * summary task's range by sequence number.
 */
export type MessagesOfTask =
  | { readonly kind: 'message'; readonly id: number }
  | {
      readonly kind: 'range';
      readonly workspaceId: string;
      readonly sessionId: string;
      readonly fromSeq: number;
      readonly toSeq: number;
    }
  | { readonly kind: 'none' };

export function messagesOfTask(
  messageId: number | null,
  unit: UnitRow,
  payload: TaskPayload,
): MessagesOfTask {
  const summary = summaryRangeOf(payload);
  if (summary)
    return {
      kind: 'range',
      workspaceId: unit.workspace_id,
      sessionId: unit.session_id,
      fromSeq: summary.fromSeq,
      toSeq: summary.toSeq,
    };
  return messageId === null ? { kind: 'none' } : { kind: 'message', id: messageId };
}

/** A task as handed to a worker, with the messages it covers. */
export const taskRecordOf = <P>(
  row: TaskRowOf<P>,
  unit: UnitRow,
  payload: TaskPayload,
  messages: readonly Message[],
): TaskRecord => ({
  id: row.id,
  unitId: row.unit_id,
  type: unit.task_type as TaskType,
  key: keyOf(unit),
  messageId: messageIdOf(row.message_id),
  payload,
  messages,
  summary: summaryRangeOf(payload),
  runs: row.runs,
  failures: row.failures,
  tokens: row.tokens,
  createdAt: row.created_at,
});

/** A raw task row, for inspection (`Store.listTasks`); `unit` carries the row's work-unit key. */
export const taskRowOf = <P>(row: TaskRowOf<P>, unit: UnitRow, payload: TaskPayload): TaskRow => ({
  id: row.id,
  key: keyOf(unit),
  state: row.state as TaskState,
  runs: row.runs,
  failures: row.failures,
  lastError: row.last_error,
  payload,
  messageId: messageIdOf(row.message_id),
});

/**
 * When unit `u`'s oldest pending task was created: found from its head (a lower bound, at most a
 * claim budget of finished tasks before it) along `tasks_by_unit`.
 */
const OLDEST_PENDING_OF_UNIT = `(SELECT t.created_at FROM tasks t
    WHERE t.unit_id = u.id AND t.id >= u.head_task_id AND t.state = 'pending' ORDER BY t.id LIMIT 1)`;

/**
 * The columns an inspection adds to `work_units u` (both stores; `jsonArray` is the dialect's
 * function): the oldest pending and the running task, found from the unit's head, and the last
 * error through the partial index of tasks with an error.
 */
export const workUnitInsightColumns = (jsonArray: 'json_array' | 'json_build_array'): string => `
  ${unitWatermark(jsonArray === 'json_array' ? 'sqlite' : 'postgres')} AS derived_through_seq,
  CASE WHEN u.pending > 0 THEN ${OLDEST_PENDING_OF_UNIT} END AS oldest_pending_at,
  CASE WHEN u.running > 0 THEN (SELECT ${jsonArray}(t.id, t.started_at, t.failures) FROM tasks t
    WHERE t.unit_id = u.id AND t.id >= u.head_task_id AND t.state = 'running' ORDER BY t.id LIMIT 1) END
    AS running_task,
  (SELECT t.last_error FROM tasks t WHERE t.unit_id = u.id AND t.last_error IS NOT NULL
    ORDER BY t.id DESC LIMIT 1) AS last_error,
  CASE WHEN u.pending > 0 THEN (SELECT coalesce(sum(x.tokens), 0) FROM (SELECT t.tokens FROM tasks t
    WHERE t.unit_id = u.id AND t.id >= u.head_task_id AND t.state = 'pending' ORDER BY t.id
    LIMIT ${PENDING_TOKENS_SCAN}) x) ELSE 0 END AS pending_tokens`;

/**
 * The first message `seq` a task is about, from its payload (a summary: the first message it
 * covers), in the dialect's JSON: what "derived up to message N" is measured on.
 */
const taskSeq = (dialect: 'sqlite' | 'postgres', t: string) =>
  dialect === 'sqlite'
    ? `coalesce(json_extract(${t}.payload, '$.fromSeq'), json_extract(${t}.payload, '$.seq'))`
    : `coalesce((${t}.payload->>'fromSeq')::integer, (${t}.payload->>'seq')::integer)`;

/**
 * A unit's watermark: the session's message count when it has nothing unfinished, else one less
 * than its first unfinished task's first message (found from its head, a lower bound while leased).
 */
export const unitWatermark = (dialect: 'sqlite' | 'postgres', u = 'u'): string => `CASE
  WHEN ${u}.head_task_id IS NULL THEN (SELECT s.message_count FROM sessions s
    WHERE s.workspace_id = ${u}.workspace_id AND s.id = ${u}.session_id)
  ELSE (SELECT ${taskSeq(dialect, 'h')} - 1 FROM tasks h
    WHERE h.unit_id = ${u}.id AND h.id >= ${u}.head_task_id AND h.finished_at IS NULL ORDER BY h.id LIMIT 1) END`;

/** Pending tasks whose tokens an inspection sums at most per unit (a batch is far smaller). */
export const PENDING_TOKENS_SCAN = 1000;

/** The oldest pending task over every unit (`Store.oldestPendingAt`). */
export const OLDEST_PENDING_SQL = `SELECT min(oldest) AS oldest FROM (
  SELECT ${OLDEST_PENDING_OF_UNIT} AS oldest FROM work_units u
  WHERE u.head_task_id IS NOT NULL AND u.pending > 0) AS heads`;

/**
 * The lowest watermark over the units a filter matches (`Store.derivedThroughSeq`): `filterSql`
 * selects `work_units u`; the session's message count bounds it (a unit with no task yet).
 */
export const watermarkSql = (dialect: 'sqlite' | 'postgres', filterSql: string, session: string) =>
  `SELECT min(w) AS seq FROM (
     SELECT ${unitWatermark(dialect)} AS w FROM work_units u WHERE ${filterSql}
     UNION ALL SELECT s.message_count FROM sessions s WHERE ${session}) AS marks`;

/** Ids of the workspaces that have work units, by id (`Store.listWorkspaces`); one parameter: the limit. */
export const WORKSPACES_WITH_WORK_SQL = (limit: string) => `SELECT w.id FROM workspaces w
  WHERE EXISTS (SELECT 1 FROM work_units u WHERE u.workspace_id = w.id) ORDER BY w.id LIMIT ${limit}`;

/** A work unit row with what an inspection adds (`Store.listWorkUnits`). */
export interface WorkUnitInfoRow extends UnitRow {
  oldest_pending_at: number | null;
  /** `[id, started_at, failures]` of the running task: JSON text in SQLite, parsed in PostgreSQL. */
  running_task: string | [number, number, number] | null;
  last_error: string | null;
  pending_tokens: number;
  derived_through_seq: number | null;
}

export function workUnitInfoOf(row: WorkUnitInfoRow): WorkUnitInfo {
  const running = typeof row.running_task === 'string' ? JSON.parse(row.running_task) : row.running_task;
  const [taskId, startedAt, failures] = (running ?? []) as number[];
  return {
    id: row.id,
    key: keyOf(row),
    counters: countersOf(row),
    oldestPendingAt: row.oldest_pending_at === null ? null : Number(row.oldest_pending_at),
    running:
      taskId === undefined ? null : { taskId, startedAt: startedAt ?? 0, attempt: (failures ?? 0) + 1 },
    retryAt: row.retrying > 0 ? row.available_at : null,
    lastError: row.last_error,
    claimableAt: row.head_task_id === null ? null : Number(row.available_at),
    leased: row.lease_owner !== null,
    pendingTokens: Number(row.pending_tokens ?? 0),
    derivedThroughSeq: row.derived_through_seq === null ? null : Number(row.derived_through_seq),
  };
}

/** A failed task row joined with its unit's key columns (`Store.listFailedTasks`). */
export interface FailedTaskRow<P> extends KeyColumns {
  id: number;
  message_id: number | null;
  payload: P;
  runs: number;
  last_error: string;
  created_at: number;
  finished_at: number;
}

export const failedTaskOf = <P>(row: FailedTaskRow<P>, payload: TaskPayload): FailedTask => ({
  id: row.id,
  key: keyOf(row),
  messageId: messageIdOf(row.message_id),
  payload,
  error: row.last_error,
  attempts: row.runs,
  createdAt: row.created_at,
  failedAt: row.finished_at,
});
