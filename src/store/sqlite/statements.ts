/** Every SQL statement of the SQLite store, prepared once per connection. */
import type Database from 'better-sqlite3';
import type { Counters } from '../../domain/counters.ts';
import type { Readiness } from '../queue-plan.ts';
import {
  type FailedTaskRow,
  type Head,
  type headColumns,
  type KeyColumns,
  type MessageRow,
  OLDEST_PENDING_SQL,
  type TaskRowOf,
  type UnitRow,
  WORKSPACES_WITH_WORK_SQL,
  type WorkUnitInfoRow,
  workUnitInsightColumns,
} from '../rows.ts';
import {
  insertEventSql,
  insertWatchSql,
  pruneOutboxSql,
  type SettledWatchRow,
  settleWatchesSql,
  sqliteParam,
  watchOutcomesSql,
} from '../webhook-sql.ts';

/** Parameters of a statement that changes one task of a unit from the state it is expected in. */
interface TaskChange {
  id: number;
  unitId: number;
  expected: string;
  /** 1 when the change counts a failed attempt. */
  failed: number;
  error: string | null;
}

/** What finishing a task returns of it: its watch (`notifyWhenDerived`), if any. */
export interface FinishedTask {
  watch_id: number | null;
}

/** A task row as SQLite returns it (the payload is JSON text). */
export type TaskRowData = TaskRowOf<string>;

/** Honcho's attributes as the rows keep them (see `../attributes.ts`). */
interface AttributeColumns {
  created_at: number;
  metadata: string | null;
  configuration: string | null;
}

/** A task's message, joined to its row (`null` columns when it has none). */
export interface JoinedMessage {
  m_peer_id: string | null;
  m_seq: number | null;
  m_content: string | null;
  m_created_at: number | null;
  m_metadata: string | null;
}

/** Parameters of `UNIT_FILTER`: `null` matches any value. */
export interface UnitFilterParams {
  workspaceId: string;
  sessionId: string | null;
  observerId: string | null;
  senderId: string | null;
  taskType: string | null;
}

/** The `UnitFilter` of the store contract, on `work_units u`. */
const UNIT_FILTER = `u.workspace_id = @workspaceId
  AND (@sessionId IS NULL OR u.session_id = @sessionId)
  AND (@observerId IS NULL OR u.observer_id = @observerId)
  AND (@senderId IS NULL OR u.sender_id = @senderId)
  AND (@taskType IS NULL OR u.task_type = @taskType)`;
const TASK = 'id, unit_id, message_id, state, payload, runs, failures, last_error, created_at, tokens';

/** A unit a claim may take: its head and how often that head's runs were interrupted. */
export interface ReadyUnit {
  id: number;
  head_task_id: number;
  interruptions: number;
}

/** The claim scan of one readiness (`READINESS`), for every type or for a lane's types. */
function readySql(readiness: Readiness, typed: boolean): string {
  const [index, when] =
    readiness === 'now'
      ? ['work_units_ready_now', 'w.available_at = 0']
      : ['work_units_due', 'w.available_at > 0 AND w.available_at <= ?'];
  return `SELECT w.id, w.head_task_id, h.interruptions FROM work_units w INDEXED BY ${index}
    JOIN tasks h ON h.id = w.head_task_id
    WHERE w.head_task_id IS NOT NULL AND ${when} AND w.lease_owner IS NULL${
      typed ? ' AND w.task_type IN (SELECT value FROM json_each(?))' : ''
    }
    ORDER BY w.head_task_id LIMIT ?`;
}

/** What the store uses of a prepared statement (named here, so declarations can name it). */
export interface Prepared<P extends unknown[], R> {
  run(...params: P): Database.RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
}

export function prepareStatements(db: Database.Database) {
  const p = <P extends unknown[], R = unknown>(text: string): Prepared<P, R> => db.prepare<P, R>(text);
  return {
    // workspaces, peers, sessions, members, messages
    insertWorkspace: p<[string, number]>(
      'INSERT INTO workspaces (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING',
    ),
    getWorkspace: p<[string], { settings: string } & AttributeColumns>(
      'SELECT settings, created_at, metadata, configuration FROM workspaces WHERE id = ?',
    ),
    /** Values: metadata, configuration (JSON text, or null to keep), then the key. */
    setWorkspaceAttributes: p<[string | null, string | null, string]>(
      `UPDATE workspaces SET metadata = coalesce(?, metadata), configuration = coalesce(?, configuration)
       WHERE id = ?`,
    ),
    setPeerAttributes: p<[string | null, string | null, string, string]>(
      `UPDATE peers SET metadata = coalesce(?, metadata), configuration = coalesce(?, configuration)
       WHERE workspace_id = ? AND id = ?`,
    ),
    setSessionAttributes: p<[string | null, string | null, string, string]>(
      `UPDATE sessions SET metadata = coalesce(?, metadata), configuration = coalesce(?, configuration)
       WHERE workspace_id = ? AND id = ?`,
    ),
    setWorkspaceSettings: p<[string, string]>('UPDATE workspaces SET settings = ? WHERE id = ?'),
    insertPeer: p<[string, string, number]>(
      'INSERT INTO peers (workspace_id, id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ),
    setPeerObserveMe: p<[number, string, string]>(
      'UPDATE peers SET observe_me = ? WHERE workspace_id = ? AND id = ?',
    ),
    getPeer: p<[string, string], { observe_me: number } & AttributeColumns>(
      'SELECT observe_me, created_at, metadata, configuration FROM peers WHERE workspace_id = ? AND id = ?',
    ),
    insertSession: p<[string, string, number]>(
      'INSERT INTO sessions (workspace_id, id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ),
    getSession: p<[string, string], { settings: string; message_count: number } & AttributeColumns>(
      `SELECT settings, message_count, created_at, metadata, configuration FROM sessions
       WHERE workspace_id = ? AND id = ?`,
    ),
    setSessionSettings: p<[string, string, string]>(
      'UPDATE sessions SET settings = ? WHERE workspace_id = ? AND id = ?',
    ),
    setMessageCount: p<[number, string, string]>(
      'UPDATE sessions SET message_count = ? WHERE workspace_id = ? AND id = ?',
    ),
    listMembers: p<[string, string], { peer_id: string; observe_me: number | null; observe_others: number }>(
      `SELECT peer_id, observe_me, observe_others FROM session_peers
       WHERE workspace_id = ? AND session_id = ? ORDER BY peer_id`,
    ),
    upsertMember: p<[string, string, string, number | null, number, number]>(
      `INSERT INTO session_peers (workspace_id, session_id, peer_id, observe_me, observe_others, joined_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (workspace_id, session_id, peer_id)
       DO UPDATE SET observe_me = excluded.observe_me, observe_others = excluded.observe_others`,
    ),
    deleteMember: p<[string, string, string]>(
      'DELETE FROM session_peers WHERE workspace_id = ? AND session_id = ? AND peer_id = ?',
    ),
    insertMessage: p<[string, string, number, string, string, number, string | null]>(
      `INSERT INTO messages (workspace_id, session_id, seq, peer_id, content, created_at, metadata)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    listMessages: p<[string, string, number, number], MessageRow>(
      `SELECT id, peer_id, seq, content, created_at, metadata FROM messages
       WHERE workspace_id = ? AND session_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
    ),

    // webhooks (docs/webhooks.md): the outbox is written inside the queue's transactions
    insertWebhookEvent: p<[Record<string, unknown>]>(insertEventSql(sqliteParam)),
    insertSessionIdleEvent: p<[Record<string, unknown>]>(insertEventSql(sqliteParam, true)),
    /** A watched `addMessages` call (`notifyWhenDerived`); derived at once when it made no task. */
    insertWatch: p<[Record<string, unknown>], { id: number }>(insertWatchSql(sqliteParam)),
    /** Values: now, the watch ids as a JSON array. */
    settleWatches: p<[Record<string, unknown>], SettledWatchRow>(
      settleWatchesSql(sqliteParam, 'SELECT value FROM json_each(@p2)'),
    ),
    watchOutcomes: p<[Record<string, unknown>], { completed: number; failed: number }>(
      watchOutcomesSql(sqliteParam),
    ),
    /** Messages of a workspace by id (a JSON array of ids). */
    messagesById: p<[string, string], { id: number; session_id: string; seq: number }>(
      `SELECT id, session_id, seq FROM messages WHERE workspace_id = ? AND id IN (SELECT value FROM json_each(?))`,
    ),
    /** The tasks messages created (a JSON array of ids), of one observer's units or all, of the given types. */
    tasksOfMessages: p<
      [{ ids: string; observer: string | null; types: string }],
      KeyColumns & { message_id: number; state: string; failures: number }
    >(
      `SELECT t.message_id, t.state, t.failures, u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
       FROM tasks t JOIN work_units u ON u.id = t.unit_id
       WHERE t.message_id IN (SELECT value FROM json_each(@ids)) AND (@observer IS NULL OR u.observer_id = @observer)
         AND u.task_type IN (SELECT value FROM json_each(@types))
       ORDER BY t.id`,
    ),
    getMessage: p<[number], MessageRow & { workspace_id: string; session_id: string }>(
      'SELECT id, workspace_id, session_id, peer_id, seq, content, created_at, metadata FROM messages WHERE id = ?',
    ),
    messagesInRange: p<[string, string, number, number], MessageRow>(
      `SELECT id, peer_id, seq, content, created_at, metadata FROM messages
       WHERE workspace_id = ? AND session_id = ? AND seq BETWEEN ? AND ? ORDER BY seq`,
    ),

    // queue: enqueue
    /** Counts `pending` new tasks in a unit (creating it); one change (version) however many. */
    enqueueUnit: p<
      [string, string, string, string, string | null, string | null, number],
      { id: number; head_task_id: number | null; lease_owner: string | null }
    >(
      `INSERT INTO work_units (unit_key, task_type, workspace_id, session_id, observer_id, sender_id, pending, version)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT (unit_key) DO UPDATE SET pending = pending + excluded.pending, version = version + 1
       RETURNING id, head_task_id, lease_owner`,
    ),
    insertTask: p<[number, number, string, number, number, number | null]>(
      `INSERT INTO tasks (unit_id, message_id, state, payload, tokens, created_at, watch_id)
       VALUES (?, ?, 'pending', ?, ?, ?, ?)`,
    ),
    /** An unleased unit's claim time, from its head and its batch (`queue-plan.ts`, `availableAt`). */
    setAvailableAt: p<[number, number]>(
      'UPDATE work_units SET available_at = ? WHERE id = ? AND lease_owner IS NULL',
    ),
    /** A unit's first unfinished tasks from its head, as far as one batch reaches. */
    batchTasks: p<[number, number, number], { id: number; tokens: number; interruptions: number }>(
      `SELECT id, tokens, interruptions FROM tasks WHERE unit_id = ? AND id >= ? AND finished_at IS NULL
       ORDER BY id LIMIT ?`,
    ),
    setUnitHead: p<[number, number]>('UPDATE work_units SET head_task_id = ?, available_at = 0 WHERE id = ?'),

    // queue: claims and leases
    /** Leases that expired, and every lease of an owner (a restarted process), to recover. */
    leasesToRecover: p<[number, string | null], { id: number; head_task_id: number | null } & KeyColumns>(
      `SELECT id, head_task_id, task_type, workspace_id, session_id, observer_id, sender_id FROM work_units
       WHERE lease_owner IS NOT NULL AND (lease_expires_at < ? OR lease_owner = ?)`,
    ),
    /** A running task whose process died: back to pending, one more interruption counted. */
    interruptTask: p<[number]>(
      `UPDATE tasks SET state = 'pending', started_at = NULL, interruptions = interruptions + 1
       WHERE id = ? AND state = 'running'`,
    ),
    /** The tasks a leased unit's store holds as running (the prefix of its unfinished ones). */
    runningTasks: p<[number, number], { id: number; interruptions: number }>(
      `SELECT id, interruptions FROM tasks WHERE unit_id = ? AND id >= ? AND state = 'running' ORDER BY id`,
    ),
    /** A running task interrupted for the last time: failed for good. */
    failInterruptedTask: p<[string, number, number], FinishedTask>(
      `UPDATE tasks SET state = 'failed', interruptions = interruptions + 1, last_error = ?, finished_at = ?
       WHERE id = ? AND state = 'running' RETURNING watch_id`,
    ),
    /** From a lower bound of the head: at most one claim budget of finished tasks to step over. */
    firstUnfinished: p<[number, number], Head>(
      `SELECT id, run_at, failures, created_at FROM tasks WHERE unit_id = ? AND id >= ? AND finished_at IS NULL
       ORDER BY id LIMIT 1`,
    ),
    /**
     * Units to claim, oldest head first, with how often their head's runs were interrupted: one
     * scan per `READINESS` (`queue-plan.ts`), each on its own index. Values: [now,] [types as a
     * JSON array,] limit; every task type (the usual lane) names no types.
     */
    readyNowAll: p<[number], ReadyUnit>(readySql('now', false)),
    readyNow: p<[string, number], ReadyUnit>(readySql('now', true)),
    readyDueAll: p<[number, number], ReadyUnit>(readySql('due', false)),
    readyDue: p<[number, string, number], ReadyUnit>(readySql('due', true)),
    /** Leases a unit whose first `started` tasks (from its head) were just started. */
    leaseUnit: p<[string, number, number, number, number, number], UnitRow>(
      `UPDATE work_units SET lease_owner = ?, lease_token = lease_token + 1, lease_expires_at = ?,
         claimed_through = ?, pending = pending - ?, running = running + ?, retrying = 0, version = version + 1
       WHERE id = ? RETURNING *`,
    ),
    startTask: p<[number, number], TaskRowData & Partial<JoinedMessage>>(
      `UPDATE tasks SET state = 'running', runs = runs + 1, started_at = ? WHERE id = ? RETURNING ${TASK}`,
    ),
    renewLease: p<[number, number, string, number, number]>(
      `UPDATE work_units SET lease_expires_at = ?
       WHERE id = ? AND lease_owner = ? AND lease_token = ? AND lease_expires_at >= ?`,
    ),

    // queue: settling attempts
    getUnitLease: p<
      [number],
      Pick<UnitRow, 'lease_owner' | 'lease_token' | 'lease_expires_at' | 'running' | 'head_task_id'> &
        KeyColumns & { watching: number }
    >(
      `SELECT lease_owner, lease_token, lease_expires_at, running, head_task_id, task_type, workspace_id, session_id,
         observer_id, sender_id, watching FROM work_units WHERE id = ?`,
    ),
    /** The watches of some tasks (a JSON array of ids), for a unit that is `watching`. */
    watchesOfTasks: p<[string], FinishedTask>(
      `SELECT DISTINCT watch_id FROM tasks WHERE id IN (SELECT value FROM json_each(?)) AND watch_id IS NOT NULL`,
    ),
    /** The unit may hold tasks of a watch (cleared by a release that drains it). */
    markWatching: p<[number]>('UPDATE work_units SET watching = 1 WHERE id = ?'),
    /**
     * A task started and ended between two reports is still pending in the store: count its run.
     * Success leaves `last_error` out of the SET, so the error index is not even looked at.
     */
    succeedTask: p<[Pick<TaskChange, 'id' | 'unitId' | 'expected'> & { now: number }]>(
      `UPDATE tasks SET state = 'succeeded', started_at = coalesce(started_at, @now), finished_at = @now,
         runs = runs + (state = 'pending')
       WHERE id = @id AND unit_id = @unitId AND state = @expected`,
    ),
    /** Every task of `@tasks` (a JSON array of `[id, expected state]`) of one unit, succeeded at once. */
    succeedTasks: p<[{ tasks: string; unitId: number; now: number }]>(
      `UPDATE tasks SET state = 'succeeded', started_at = coalesce(started_at, @now), finished_at = @now,
         runs = runs + (state = 'pending')
       WHERE unit_id = @unitId AND (id, state) IN (
         SELECT value ->> 0, value ->> 1 FROM json_each(@tasks))`,
    ),
    failTask: p<[Pick<TaskChange, 'id' | 'unitId' | 'expected' | 'error'> & { now: number }]>(
      `UPDATE tasks SET state = 'failed', failures = failures + 1, last_error = @error,
         started_at = coalesce(started_at, @now), finished_at = @now, runs = runs + (state = 'pending')
       WHERE id = @id AND unit_id = @unitId AND state = @expected`,
    ),
    requeueTask: p<[TaskChange & { runAt: number }], { failures: number; created_at: number }>(
      `UPDATE tasks SET failures = failures + @failed, last_error = coalesce(@error, last_error), run_at = @runAt,
         started_at = NULL, runs = runs + (state = 'pending'), state = 'pending'
       WHERE id = @id AND unit_id = @unitId AND state = @expected RETURNING failures, created_at`,
    ),
    markRunning: p<[number, number, number], { id: number }>(
      `UPDATE tasks SET state = 'running', runs = runs + 1, started_at = ?
       WHERE id = ? AND unit_id = ? AND state = 'pending' RETURNING id`,
    ),
    /**
     * The unfinished tasks after the head (a cancelled one is finished and skipped), each with its
     * message when it has one (a representation task), so a claim reads them in one statement.
     */
    tasksAfter: p<[number, number, number], TaskRowData & Partial<JoinedMessage>>(
      `SELECT t.id, t.unit_id, t.message_id, t.state, t.payload, t.runs, t.failures, t.last_error, t.created_at, t.tokens,
         m.peer_id AS m_peer_id, m.seq AS m_seq, m.content AS m_content, m.created_at AS m_created_at,
         m.metadata AS m_metadata
       FROM tasks t LEFT JOIN messages m ON m.id = t.message_id
       WHERE t.unit_id = ? AND t.id > ? AND t.finished_at IS NULL ORDER BY t.id LIMIT ?`,
    ),
    updateUnitCounters: p<[Counters & { unitId: number }], UnitRow>(
      `UPDATE work_units SET pending = pending + @pending, running = running + @running,
         completed = completed + @completed, failed = failed + @failed, version = version + 1
       WHERE id = @unitId RETURNING *`,
    ),
    /** Ends the lease and records the unit's exact head (NULL when drained) for the claim order. */
    releaseUnit: p<[Counters & ReturnType<typeof headColumns> & { unitId: number }], UnitRow>(
      `UPDATE work_units SET pending = pending + @pending, running = running + @running,
         completed = completed + @completed, failed = failed + @failed, head_task_id = @headId,
         available_at = @availableAt, retrying = @headRetrying, lease_owner = NULL, lease_expires_at = NULL,
         claimed_through = NULL, version = version + 1, watching = CASE WHEN @headId IS NULL THEN 0 ELSE watching END
       WHERE id = @unitId RETURNING *`,
    ),

    // inside the queue: inspection and admin (docs/api.md)
    listWorkUnits: p<
      [UnitFilterParams & { includeIdle: number; afterId: number; limit: number }],
      WorkUnitInfoRow
    >(
      `SELECT u.*, ${workUnitInsightColumns('json_array')}
       FROM work_units u
       WHERE ${UNIT_FILTER} AND (@includeIdle = 1 OR u.pending + u.running > 0) AND u.id > @afterId
       ORDER BY u.id LIMIT @limit`,
    ),
    countWorkUnits: p<[UnitFilterParams & { includeIdle: number; upTo: number }], { n: number }>(
      `SELECT count(*) AS n FROM (
         SELECT 1 FROM work_units u WHERE ${UNIT_FILTER} AND (@includeIdle = 1 OR u.pending + u.running > 0)
         LIMIT @upTo)`,
    ),
    listFailedTasks: p<[UnitFilterParams & { afterId: number; limit: number }], FailedTaskRow<string>>(
      `SELECT t.id, t.message_id, t.payload, t.runs, t.last_error, t.created_at, t.finished_at,
         u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
       FROM work_units u JOIN tasks t INDEXED BY tasks_with_error ON t.unit_id = u.id
       WHERE ${UNIT_FILTER} AND t.last_error IS NOT NULL AND t.state = 'failed' AND t.id > @afterId
       ORDER BY t.id LIMIT @limit`,
    ),
    oldestPending: p<[], { oldest: number | null }>(OLDEST_PENDING_SQL),
    workspacesWithWork: p<[number], { id: string }>(WORKSPACES_WITH_WORK_SQL('?')),
    /** Units an admin call reaches, locked by the transaction (SQLite: the write lock). */
    filteredUnits: p<[UnitFilterParams], UnitRow>(
      `SELECT u.* FROM work_units u WHERE ${UNIT_FILTER} ORDER BY u.id`,
    ),
    failedTasksOf: p<
      [number],
      {
        id: number;
        message_id: number | null;
        payload: string;
        tokens: number;
        last_error: string;
        watch_id: number | null;
      }
    >(
      `SELECT id, message_id, payload, tokens, last_error, watch_id FROM tasks INDEXED BY tasks_with_error
       WHERE unit_id = ? AND last_error IS NOT NULL AND state = 'failed' ORDER BY id`,
    ),
    deleteTask: p<[number]>('DELETE FROM tasks WHERE id = ?'),
    /** A failed task run again keeps its watch (a watch already derived is not derived again). */
    insertRetriedTask: p<
      [number, number | null, string, number, string, number, number | null],
      { id: number }
    >(
      `INSERT INTO tasks (unit_id, message_id, state, payload, tokens, last_error, created_at, watch_id)
       VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) RETURNING id`,
    ),
    /** Cancels a unit's pending tasks after `afterId` (what a worker holds is at or before it). */
    cancelPending: p<[string, number, number, number], FinishedTask>(
      `UPDATE tasks SET state = 'failed', last_error = ?, finished_at = ?
       WHERE unit_id = ? AND id > ? AND state = 'pending' RETURNING watch_id`,
    ),
    countPendingThrough: p<[number, number, number], { n: number }>(
      `SELECT count(*) AS n FROM tasks WHERE unit_id = ? AND id >= ? AND id <= ? AND state = 'pending'`,
    ),
    /** Applies an admin change's counter deltas; `headId` replaces the head when given (else kept). */
    adjustUnit: p<[Counters & { unitId: number; headId: number | null; keepHead: number }], UnitRow>(
      `UPDATE work_units SET pending = pending + @pending, running = running + @running,
         completed = completed + @completed, failed = failed + @failed,
         head_task_id = CASE WHEN @keepHead = 1 THEN head_task_id ELSE @headId END,
         available_at = CASE WHEN @keepHead = 1 THEN available_at ELSE 0 END,
         retrying = CASE WHEN @keepHead = 1 THEN retrying ELSE 0 END,
         version = version + 1
       WHERE id = @unitId RETURNING *`,
    ),

    // maintenance and inspection
    /** Maintenance, run rarely: a scan is cheaper overall than an index every finish must update. */
    pruneFinished: p<[number, number]>(
      'DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE finished_at < ? LIMIT ?)',
    ),
    /** Values: before, limit (`pruneOutboxSql`). */
    pruneOutbox: pruneOutboxSql(sqliteParam).map((text) => p<[Record<string, unknown>]>(text)),
    probe: p<[number]>(
      'INSERT INTO store_probe (id, probed_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at',
    ),
    listTasks: p<[], TaskRowData & UnitRow>(
      `SELECT t.id, t.unit_id, t.message_id, t.state, t.payload, t.runs, t.failures, t.last_error, t.created_at, t.tokens,
         u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
       FROM tasks t JOIN work_units u ON u.id = t.unit_id ORDER BY t.id`,
    ),
    listTasksByState: p<[string], TaskRowData & UnitRow>(
      `SELECT t.id, t.unit_id, t.message_id, t.state, t.payload, t.runs, t.failures, t.last_error, t.created_at, t.tokens,
         u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
       FROM tasks t JOIN work_units u ON u.id = t.unit_id WHERE t.state = ? ORDER BY t.id`,
    ),
  };
}

/** The prepared statements of one connection. */
export type Statements = ReturnType<typeof prepareStatements>;
