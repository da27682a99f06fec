/**
 * The queue's state machine on PostgreSQL (see `../store.ts` for the contract). Every function
 * runs inside the caller's transaction. Units are locked row by row (`FOR UPDATE`); claims skip
 * units another transaction holds (`SKIP LOCKED`), so two processes never claim the same unit, and
 * a report re-reads its unit's lease under the lock, so a stale or expired lease writes nothing.
 */
import type { Counters } from '../../domain/counters.ts';
import type { Message } from '../../domain/model.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { queueEmpty, sessionIdle, taskFailed, type WebhookEvent } from '../../domain/webhook-events.ts';
import type { TaskType, WorkUnitKey } from '../../domain/work-unit-key.ts';
import {
  availableAt,
  type BatchPolicies,
  type BatchPolicy,
  type BatchWindow,
  batchSize,
  claimLanes,
  type HeadAfterReport,
  planRecovery,
  planReport,
  READINESS,
  type Readiness,
  type TaskWrite,
} from '../queue-plan.ts';
import {
  type Head,
  headColumns,
  type KeyColumns,
  keyOf,
  type MessageRow,
  messageOf,
  messagesOfTask,
  releaseReason,
  type TaskRowOf,
  taskRecordOf,
  type UnitRow,
} from '../rows.ts';
import type {
  ClaimedUnit,
  ClaimRequest,
  Lease,
  RecoveryRequest,
  ReportResult,
  UnitReport,
  WorkerRequest,
} from '../store.ts';
import {
  insertEventSql,
  insertEventValues,
  type SettledWatchRow,
  settleWatchesSql,
  watchEvent,
  watchIdsOf,
  watchOutcomesSql,
} from '../webhook-sql.ts';
import type { Db } from './connection.ts';

/** What finishing a task returns of it: its watch (`notifyWhenDerived`), if any. */
export interface FinishedTask {
  watch_id: string | null;
}

/** A task row as PostgreSQL returns it (the payload is parsed JSON). */
export type TaskRowData = TaskRowOf<TaskPayload>;

const TASK = 'id, unit_id, message_id, state, payload, runs, failures, last_error, created_at, tokens';

/**
 * The messages the claimed tasks cover, by task id: one query for the representation tasks'
 * messages, one per summary task for its range (a summary comes once per many messages).
 */
async function loadMessages(
  db: Db,
  tasks: readonly { row: TaskRowData; unit: UnitRow }[],
): Promise<Map<number, Message[]>> {
  const byTask = new Map<number, Message[]>();
  /** Message id -> the tasks that need it (tasks of several observers share one message). */
  const wanted = new Map<number, number[]>();
  for (const { row, unit } of tasks) {
    const covered = messagesOfTask(row.message_id, unit, row.payload);
    if (covered.kind === 'message') wanted.set(covered.id, [...(wanted.get(covered.id) ?? []), row.id]);
    else if (covered.kind === 'range') {
      const found = await db.query<MessageRow>(
        `SELECT id, peer_id, seq, content, created_at, metadata FROM messages
         WHERE workspace_id = $1 AND session_id = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq`,
        [covered.workspaceId, covered.sessionId, covered.fromSeq, covered.toSeq],
      );
      byTask.set(
        row.id,
        found.rows.map((m) => messageOf(m, covered.workspaceId, covered.sessionId)),
      );
    }
  }
  if (wanted.size > 0) {
    const found = await db.query<MessageRow & { workspace_id: string; session_id: string }>(
      `SELECT id, workspace_id, session_id, peer_id, seq, content, created_at, metadata FROM messages
       WHERE id = ANY($1::bigint[])`,
      [[...wanted.keys()]],
    );
    for (const m of found.rows) {
      for (const taskId of wanted.get(Number(m.id)) ?? [])
        byTask.set(taskId, [messageOf(m, m.workspace_id, m.session_id)]);
    }
  }
  return byTask;
}

async function one<R>(db: Db, text: string, values: unknown[]): Promise<R | undefined> {
  return (await db.query(text, values)).rows[0] as R | undefined;
}

/**
 * Writes a webhook event to the outbox, in the caller's transaction (docs/webhooks.md); returns the
 * deliveries made (0 without endpoints for it: one indexed statement).
 */
export async function recordEvent(
  db: Db,
  event: WebhookEvent,
  now: number,
  endpointId: number | null = null,
): Promise<number> {
  const inserted = await db.query(
    insertEventSql((n) => `$${n}`),
    insertEventValues(event, now, endpointId),
  );
  return inserted.rowCount ?? 0;
}

/**
 * Watches (`notifyWhenDerived` calls) whose last task this transaction finished: each marked
 * derived once, with its `messages.derived` event.
 */
export async function settleWatches(db: Db, watchIds: readonly number[], now: number): Promise<void> {
  if (watchIds.length === 0) return;
  // Lock the watches first, in its own statement: two transactions finishing a watch's last two
  // tasks at once would each see the other's task unfinished (READ COMMITTED) and neither derive
  // it. The second to take the lock checks with a snapshot taken after the first committed.
  await db.query(
    'SELECT id FROM derivation_watches WHERE id = ANY($1::bigint[]) AND derived_at IS NULL ORDER BY id FOR UPDATE',
    [watchIds],
  );
  const settled = await db.query<SettledWatchRow>(
    settleWatchesSql((n) => `$${n}`, 'SELECT unnest($2::bigint[])'),
    [now, watchIds],
  );
  for (const watch of settled.rows) {
    const outcomes = await one<{ completed: string; failed: string }>(
      db,
      watchOutcomesSql((n) => `$${n}`),
      [watch.id],
    );
    await recordEvent(db, watchEvent(watch, outcomes, now), now);
  }
}

/** Units drained: `queue.empty` each, and `session.idle` for their sessions with nothing open left. */
async function recordDrained(db: Db, keys: readonly WorkUnitKey[], now: number): Promise<void> {
  const sessions = new Map<string, WorkUnitKey>();
  for (const key of keys) {
    await recordEvent(db, queueEmpty(key, now), now);
    sessions.set(`${key.workspaceId}/${key.sessionId}`, key);
  }
  if (sessions.size === 0) return;
  // The same race for session.idle (two units of a session draining at once): one lock per session
  // whose workspace has an endpoint for it, in key order, before the checks below; sessions no
  // endpoint wants are not checked at all.
  const drained = [...sessions.values()].sort((a, b) =>
    a.workspaceId === b.workspaceId
      ? a.sessionId.localeCompare(b.sessionId)
      : a.workspaceId.localeCompare(b.workspaceId),
  );
  const wanted = await db.query<{ n: number }>(
    `SELECT s.n, pg_advisory_xact_lock(hashtext('session.idle:' || s.workspace_id || '/' || s.session_id))
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(workspace_id, session_id, n)
     WHERE EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.workspace_id = s.workspace_id AND e.events LIKE '%,session.idle,%')
     ORDER BY s.n`,
    [drained.map((k) => k.workspaceId), drained.map((k) => k.sessionId)],
  );
  for (const row of wanted.rows) {
    const key = drained[Number(row.n) - 1]!;
    const idle = sessionIdle(key.workspaceId, key.sessionId, now);
    await db.query(
      insertEventSql((n) => `$${n}`, true),
      [...insertEventValues(idle, now), key.sessionId],
    );
  }
}

/** The first unfinished task at or after a lower bound of the head. */
const firstUnfinished = (db: Db, unitId: number, from: number) =>
  one<Head>(
    db,
    `SELECT id, run_at, failures, created_at FROM tasks WHERE unit_id = $1 AND id >= $2 AND finished_at IS NULL
     ORDER BY id LIMIT 1`,
    [unitId, from],
  );

/** Ends a lease, applies counter deltas and records the unit's exact head for the claim order. */
const releaseUnit = (db: Db, unitId: number, delta: Counters, head: Head | undefined, at?: number) => {
  const { headId, availableAt, headRetrying } = headColumns(head, at);
  return one<UnitRow>(
    db,
    `UPDATE work_units SET pending = pending + $2, running = running + $3, completed = completed + $4,
       failed = failed + $5, head_task_id = $6, available_at = $7, retrying = $8,
       lease_owner = NULL, lease_expires_at = NULL, claimed_through = NULL, version = version + 1
     WHERE id = $1 RETURNING *`,
    [unitId, delta.pending, delta.running, delta.completed, delta.failed, headId, availableAt, headRetrying],
  );
};

/**
 * Frees units whose lease expired, or every unit `owner` leased (a restarted process), as
 * `planRecovery` says (rules and head as in the SQLite store).
 */
export async function recoverLeases(
  db: Db,
  now: number,
  request: RecoveryRequest,
  /** Whose leases to recover whatever their expiry (a restarted process), or only expired ones. */
  owner: string | null,
  batches: BatchPolicies,
): Promise<number> {
  const units = await db.query<{ id: number; head_task_id: number | null } & KeyColumns>(
    `SELECT id, head_task_id, task_type, workspace_id, session_id, observer_id, sender_id FROM work_units
     WHERE lease_owner IS NOT NULL AND (lease_expires_at < $1 OR lease_owner = $2)
     ORDER BY id FOR UPDATE SKIP LOCKED`,
    [now, owner],
  );
  for (const unit of units.rows) {
    const { id, head_task_id, task_type } = unit;
    const running =
      head_task_id === null
        ? []
        : (
            await db.query<{ id: number; interruptions: number }>(
              `SELECT id, interruptions FROM tasks WHERE unit_id = $1 AND id >= $2 AND state = 'running'
               ORDER BY id`,
              [id, head_task_id],
            )
          ).rows;
    const plan = planRecovery(running, head_task_id, request.maxInterruptions);
    const failed = plan.writes.filter((w) => w.op === 'fail-interrupted');
    const interrupted = plan.writes.filter((w) => w.op === 'interrupt');
    const changed = await db.query<FinishedTask>(
      `UPDATE tasks t SET interruptions = t.interruptions + 1,
         state = CASE WHEN w.error IS NULL THEN 'pending' ELSE 'failed' END,
         started_at = CASE WHEN w.error IS NULL THEN NULL ELSE t.started_at END,
         last_error = coalesce(w.error, t.last_error),
         finished_at = CASE WHEN w.error IS NULL THEN NULL ELSE $3::bigint END
       FROM unnest($1::bigint[], $2::text[]) AS w(id, error)
       WHERE t.id = ANY($1::bigint[]) AND t.id = w.id AND t.state = 'running'
       RETURNING CASE WHEN w.error IS NULL THEN NULL ELSE t.watch_id END AS watch_id`,
      [
        [...failed.map((w) => w.id), ...interrupted.map((w) => w.id)],
        [...failed.map((w) => w.error), ...interrupted.map(() => null)],
        now,
      ],
    );
    if (changed.rowCount !== plan.writes.length)
      throw new Error(`work unit ${id} changed under its recovery`);
    const head = plan.head.kind === 'from' ? await firstUnfinished(db, id, plan.head.id) : undefined;
    const at = (await claimableAt(db, batches, [{ id, task_type, head }])).get(id);
    await releaseUnit(db, id, plan.delta, head, at);
    if (!head) await recordDrained(db, [keyOf(unit)], now);
    await settleWatches(db, watchIdsOf(changed.rows), now);
  }
  return units.rows.length;
}

/**
 * Claims up to `request.max` ready units, lane by lane (`claimLanes`), oldest head first within a
 * lane, skipping units other transactions hold.
 */
export async function claimReady(
  db: Db,
  request: ClaimRequest,
  now: number,
  batches: BatchPolicies,
  /** This store's claims so far: which lane goes first (`claimLanes`). */
  turn = 0,
): Promise<ClaimedUnit[]> {
  const claimed: ClaimedUnit[] = [];
  for (const lane of claimLanes(request.max, request.maxByType, batches, turn)) {
    const max = Math.min(lane.max, request.max - claimed.length);
    if (max <= 0) break;
    claimed.push(
      ...(lane.batch
        ? await claimBatches(db, request, lane.types, lane.batch, max, now)
        : await claimUnits(db, request, lane.types, max, now)),
    );
  }
  return claimed;
}

/**
 * The ready units of a claim as CTEs ending in `ready` (id, head_task_id, interruptions), locked:
 * one scan per `READINESS`, each on the partial index that holds only its units
 * (`work_units_due`, `work_units_ready_now`) and each at most `max` (`limit`), then the oldest
 * heads of both. `$1` is now; `types` names the lane's task types. A scan may lock a unit the
 * claim then leaves (the other scan had older heads): it is free again at the commit.
 */
const readyCtes = (types: string, limit: string): string => {
  const scan = (when: string) =>
    `SELECT w.id, w.head_task_id, h.interruptions FROM work_units w JOIN tasks h ON h.id = w.head_task_id
       WHERE w.head_task_id IS NOT NULL AND w.lease_owner IS NULL AND ${when}
         AND w.task_type = ANY(${types})
       ORDER BY w.head_task_id LIMIT ${limit} FOR UPDATE OF w SKIP LOCKED`;
  const whenOf: Record<Readiness, string> = {
    due: 'w.available_at > 0 AND w.available_at <= $1',
    now: 'w.available_at = 0',
  };
  return `${READINESS.map((r) => `ready_${r} AS (${scan(whenOf[r])})`).join(', ')},
     ready AS (SELECT * FROM (${READINESS.map((r) => `SELECT * FROM ready_${r}`).join(' UNION ALL ')}) r
               ORDER BY r.head_task_id LIMIT ${limit})`;
};

/**
 * Claims up to `max` units of `types`: one statement selects and leases them, starts their heads
 * and reads the tasks after each head (none after a head whose run was interrupted by a crash: it
 * runs alone, its start committed, so a further crash is pinned on it).
 */
async function claimUnits(
  db: Db,
  request: ClaimRequest,
  types: readonly TaskType[],
  max: number,
  now: number,
): Promise<ClaimedUnit[]> {
  const result = await db.query<{ units: UnitRow[]; tasks: TaskRowData[] }>(
    `WITH ${readyCtes('$6::text[]', '$2')}, following AS (
       SELECT f.* FROM ready CROSS JOIN LATERAL (
         SELECT ${TASK} FROM tasks WHERE unit_id = ready.id AND id > ready.head_task_id AND finished_at IS NULL
         ORDER BY id LIMIT (CASE WHEN ready.interruptions > 0 THEN 0 ELSE $5 END)
       ) f
     ), leased AS (
       UPDATE work_units u SET lease_owner = $3, lease_token = u.lease_token + 1, lease_expires_at = $4,
         claimed_through = coalesce((SELECT max(f.id) FROM following f WHERE f.unit_id = u.id), ready.head_task_id),
         pending = u.pending - 1, running = u.running + 1, retrying = 0, version = u.version + 1
       FROM ready WHERE u.id = ready.id RETURNING u.*
     ), started AS (
       UPDATE tasks t SET state = 'running', runs = t.runs + 1, started_at = $1
       FROM ready WHERE t.id = ready.head_task_id AND t.state = 'pending'
       RETURNING t.id, t.unit_id, t.message_id, t.state, t.payload, t.runs, t.failures, t.last_error, t.created_at, t.tokens
     )
     SELECT (SELECT coalesce(json_agg(l ORDER BY l.head_task_id), '[]') FROM leased l) AS units,
            (SELECT coalesce(json_agg(t ORDER BY t.id), '[]')
               FROM (SELECT * FROM started UNION ALL SELECT * FROM following) t) AS tasks,
            (SELECT count(*) FROM started) AS started`,
    [now, max, request.owner, now + request.leaseMs, Math.max(0, request.prefetch - 1), types],
  );
  const row = result.rows[0] as { units: UnitRow[]; tasks: TaskRowData[]; started: number } | undefined;
  if (!row || row.started !== row.units.length) throw new Error('work units changed under their claim');
  const tasksByUnit = new Map<number, TaskRowData[]>(row.units.map((u) => [u.id, []]));
  for (const task of row.tasks) tasksByUnit.get(task.unit_id)?.push(task);
  const units = new Map(row.units.map((u) => [u.id, u]));
  const messages = await loadMessages(
    db,
    row.tasks.flatMap((task) => {
      const unit = units.get(task.unit_id);
      return unit ? [{ row: task, unit }] : [];
    }),
  );
  return row.units.map((unit): ClaimedUnit => {
    const tasks = tasksByUnit.get(unit.id) ?? [];
    if (tasks[0]?.id !== unit.head_task_id) throw new Error(`work unit ${unit.id} changed under its claim`);
    return {
      lease: { unitId: unit.id, token: unit.lease_token },
      key: keyOf(unit),
      tasks: tasks.map((t) => taskRecordOf(t, unit, t.payload, messages.get(t.id) ?? [])),
      batch: false,
    };
  });
}

/**
 * Claims up to `max` units of a batched type: their first unfinished tasks are read with their
 * tokens, each unit's batch is sized (`batchSize`; an interrupted head alone), and every task of
 * the batch starts.
 */
async function claimBatches(
  db: Db,
  request: ClaimRequest,
  types: readonly TaskType[],
  policy: BatchPolicy,
  max: number,
  now: number,
): Promise<ClaimedUnit[]> {
  const window = await db.query<{ unit_id: number; id: number; tokens: number; interruptions: number }>(
    `WITH ${readyCtes('$2::text[]', '$3')}
     SELECT ready.id AS unit_id, t.id, t.tokens, t.interruptions FROM ready CROSS JOIN LATERAL (
       SELECT id, tokens, interruptions FROM tasks
       WHERE unit_id = ready.id AND id >= ready.head_task_id AND finished_at IS NULL ORDER BY id LIMIT $4
     ) t ORDER BY t.id`,
    [now, types, max, policy.maxTasks],
  );
  const byUnit = new Map<number, { id: number; tokens: number; interruptions: number }[]>();
  for (const row of window.rows) byUnit.set(row.unit_id, [...(byUnit.get(row.unit_id) ?? []), row]);
  const batches = [...byUnit].map(([unitId, tasks]) => {
    const size =
      (tasks[0]?.interruptions ?? 0) > 0
        ? 1
        : batchSize(
            policy,
            tasks.map((t) => t.tokens),
          );
    return { unitId, ids: tasks.slice(0, size).map((t) => t.id) };
  });
  if (batches.length === 0) return [];
  const started = await db.query<TaskRowData>(
    `UPDATE tasks t SET state = 'running', runs = t.runs + 1, started_at = $1
     WHERE t.id = ANY($2::bigint[]) AND t.state = 'pending' RETURNING ${TASK}`,
    [now, batches.flatMap((b) => b.ids)],
  );
  const leased = await db.query<UnitRow>(
    `UPDATE work_units u SET lease_owner = $1, lease_token = u.lease_token + 1, lease_expires_at = $2,
       claimed_through = b.last, pending = u.pending - b.n, running = u.running + b.n, retrying = 0,
       version = u.version + 1
     FROM unnest($3::bigint[], $4::integer[], $5::bigint[]) AS b(id, n, last)
     WHERE u.id = ANY($3::bigint[]) AND u.id = b.id RETURNING u.*`,
    [
      request.owner,
      now + request.leaseMs,
      batches.map((b) => b.unitId),
      batches.map((b) => b.ids.length),
      batches.map((b) => b.ids.at(-1)),
    ],
  );
  if (
    started.rowCount !== batches.reduce((n, b) => n + b.ids.length, 0) ||
    leased.rowCount !== batches.length
  )
    throw new Error('work units changed under their claim');
  const units = new Map(leased.rows.map((u) => [u.id, u]));
  const tasks = started.rows.sort((x, y) => x.id - y.id);
  const messages = await loadMessages(
    db,
    tasks.flatMap((row) => {
      const unit = units.get(row.unit_id);
      return unit ? [{ row, unit }] : [];
    }),
  );
  return batches.map(({ unitId }): ClaimedUnit => {
    const unit = units.get(unitId);
    if (!unit) throw new Error(`work unit ${unitId} changed under its claim`);
    return {
      lease: { unitId, token: unit.lease_token },
      key: keyOf(unit),
      tasks: tasks
        .filter((t) => t.unit_id === unitId)
        .map((t) => taskRecordOf(t, unit, t.payload, messages.get(t.id) ?? [])),
      batch: true,
    };
  });
}

/** The first `limit` unfinished tasks of each unit from `headId`: how many, and their tokens. */
async function batchWindows(
  db: Db,
  entries: readonly { readonly unitId: number; readonly headId: number; readonly limit: number }[],
): Promise<Map<number, BatchWindow>> {
  if (entries.length === 0) return new Map();
  const found = await db.query<{ unit_id: number; count: number; tokens: number }>(
    `SELECT l.unit_id, w.count, w.tokens FROM unnest($1::bigint[], $2::bigint[], $3::integer[]) AS l(unit_id, head_id, lim)
     CROSS JOIN LATERAL (SELECT count(*)::int AS count, coalesce(sum(x.tokens), 0)::int AS tokens FROM (
       SELECT tokens FROM tasks t WHERE t.unit_id = l.unit_id AND t.id >= l.head_id AND t.finished_at IS NULL
       ORDER BY t.id LIMIT l.lim) x) w`,
    [entries.map((e) => e.unitId), entries.map((e) => e.headId), entries.map((e) => e.limit)],
  );
  return new Map(found.rows.map((r) => [r.unit_id, { count: r.count, tokens: r.tokens }]));
}

/** When each unit with `head` may be claimed (`availableAt`: retries, batches filling). */
export async function claimableAt(
  db: Db,
  batches: BatchPolicies,
  units: readonly { readonly id: number; readonly task_type: string; readonly head: Head | undefined }[],
): Promise<Map<number, number>> {
  const policyOf = (type: string) => batches[type as TaskType];
  const windows = await batchWindows(
    db,
    units.flatMap(({ id, task_type, head }) => {
      const policy = policyOf(task_type);
      return policy && head && head.failures === 0
        ? [{ unitId: id, headId: head.id, limit: policy.maxTasks }]
        : [];
    }),
  );
  return new Map(
    units.map(({ id, task_type, head }) => [
      id,
      head ? availableAt(head, policyOf(task_type), windows.get(id)) : 0,
    ]),
  );
}

/** A released unit's head: known from the report, or the first unfinished task from `lookupFrom`. */
interface Release {
  head: Head | undefined;
  readonly lookupFrom?: number;
}

interface UnitChange {
  readonly unitId: number;
  readonly delta: Counters;
  /** Set when the report releases the unit. */
  readonly release?: Release;
}

function releaseOf(where: HeadAfterReport): Release {
  switch (where.kind) {
    case 'task':
      // Its failures and creation time are known once the task is put back (below).
      return { head: { id: where.id, run_at: where.runAt, failures: 0, created_at: 0 } };
    case 'from':
      return { head: undefined, lookupFrom: where.id };
    case 'none':
      return { head: undefined };
  }
}

/**
 * Applies unit reports, all units at once, as `planReport` says: a fixed number of statements
 * however many units moved; each task update names the state it expects and the transaction fails
 * when a report does not fit.
 */
export async function applyReports(
  db: Db,
  reports: readonly UnitReport[],
  owner: string,
  now: number,
  batches: BatchPolicies,
): Promise<ReportResult[]> {
  if (reports.length === 0) return [];
  const locked = await db.query<UnitRow>(
    'SELECT * FROM work_units WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE',
    [reports.map((r) => r.lease.unitId)],
  );
  const units = new Map(locked.rows.map((u) => [u.id, u]));
  const finished: (TaskWrite & { op: 'finish' } & { unitId: number })[] = [];
  const putBack: (TaskWrite & { op: 'put-back' } & { unitId: number })[] = [];
  const starts: { id: number; unitId: number }[] = [];
  const changes: UnitChange[] = [];
  /** Per report: lost, or the unit change it makes (kept or released, settled at the end). */
  const outcomes = reports.map((report): UnitChange | { readonly kind: 'lease-lost' } => {
    const plan = planReport(units.get(report.lease.unitId), report, owner, now);
    if (plan.kind === 'lease-lost') return plan;
    const { unitId, delta } = plan;
    for (const write of plan.writes) {
      if (write.op === 'finish') finished.push({ ...write, unitId });
      else if (write.op === 'put-back') putBack.push({ ...write, unitId });
      else starts.push({ id: write.id, unitId });
    }
    const change: UnitChange =
      plan.release === null ? { unitId, delta } : { unitId, delta, release: releaseOf(plan.release) };
    changes.push(change);
    return change;
  });

  let finishedWatches: number[] = [];
  if (finished.length > 0) {
    const done = await db.query<FinishedTask>(
      `UPDATE tasks t SET state = a.state, failures = t.failures + a.failed,
         last_error = coalesce(a.error, t.last_error), started_at = coalesce(t.started_at, $1), finished_at = $1,
         runs = t.runs + (CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END)
       FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::integer[], $6::text[], $7::text[])
         AS a(id, unit_id, state, failed, error, expected)
       WHERE t.id = ANY($2::bigint[]) AND t.id = a.id AND t.unit_id = a.unit_id AND t.state = a.expected
       RETURNING t.watch_id`,
      [
        now,
        finished.map((f) => f.id),
        finished.map((f) => f.unitId),
        finished.map((f) => f.state),
        finished.map((f) => (f.state === 'failed' ? 1 : 0)),
        finished.map((f) => f.error),
        finished.map((f) => f.expected),
      ],
    );
    if (done.rowCount !== finished.length)
      throw new Error(`a reported task is not ${finished[0]?.expected} in its work unit`);
    finishedWatches = watchIdsOf(done.rows);
  }
  if (putBack.length > 0) {
    const requeued = await db.query<{ id: number; failures: number; created_at: number }>(
      `UPDATE tasks t SET failures = t.failures + a.failed, last_error = coalesce(a.error, t.last_error),
         run_at = a.run_at, started_at = NULL, runs = t.runs + (CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END),
         state = 'pending'
       FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[], $5::bigint[], $6::text[])
         AS a(id, unit_id, failed, error, run_at, expected)
       WHERE t.id = ANY($1::bigint[]) AND t.id = a.id AND t.unit_id = a.unit_id AND t.state = a.expected
       RETURNING t.id, t.failures, t.created_at`,
      [
        putBack.map((p) => p.id),
        putBack.map((p) => p.unitId),
        putBack.map((p) => p.failed),
        putBack.map((p) => p.error),
        putBack.map((p) => p.runAt),
        putBack.map((p) => p.expected),
      ],
    );
    if (requeued.rowCount !== putBack.length)
      throw new Error('a task put back is not in the state its report says');
    const byId = new Map(requeued.rows.map((r) => [r.id, r]));
    for (const { release } of changes) {
      const row = release?.head && byId.get(release.head.id);
      if (release?.head && row)
        release.head = { ...release.head, failures: row.failures, created_at: row.created_at };
    }
  }
  if (starts.length > 0) {
    const started = await db.query(
      `UPDATE tasks t SET state = 'running', runs = t.runs + 1, started_at = $1
       FROM unnest($2::bigint[], $3::bigint[]) AS s(id, unit_id)
       WHERE t.id = ANY($2::bigint[]) AND t.id = s.id AND t.unit_id = s.unit_id AND t.state = 'pending'`,
      [now, starts.map((x) => x.id), starts.map((x) => x.unitId)],
    );
    if (started.rowCount !== starts.length) throw new Error('a task reported as running is not pending');
  }
  const lookups = changes.filter((c) => c.release?.lookupFrom !== undefined);
  if (lookups.length > 0) {
    const found = await db.query<{
      unit_id: number;
      id: number | null;
      run_at: number;
      failures: number;
      created_at: number;
    }>(
      `SELECT l.unit_id, h.id, h.run_at, h.failures, h.created_at
       FROM unnest($1::bigint[], $2::bigint[]) AS l(unit_id, from_id)
       LEFT JOIN LATERAL (SELECT id, run_at, failures, created_at FROM tasks t
                          WHERE t.unit_id = l.unit_id AND t.id >= l.from_id AND t.finished_at IS NULL
                          ORDER BY id LIMIT 1) h ON true`,
      [lookups.map((c) => c.unitId), lookups.map((c) => c.release?.lookupFrom)],
    );
    const byUnit = new Map(found.rows.map((r) => [r.unit_id, r]));
    for (const change of lookups) {
      const row = byUnit.get(change.unitId);
      if (change.release && row && row.id !== null)
        change.release.head = {
          id: row.id,
          run_at: row.run_at,
          failures: row.failures,
          created_at: row.created_at,
        };
    }
  }
  const released = changes.flatMap((c) =>
    c.release
      ? [{ id: c.unitId, task_type: units.get(c.unitId)?.task_type ?? '', head: c.release.head }]
      : [],
  );
  const claimable = await claimableAt(db, batches, released);
  if (changes.length > 0) {
    const heads = changes.map((c) => headColumns(c.release?.head, claimable.get(c.unitId)));
    await db.query(
      `UPDATE work_units u SET pending = u.pending + d.dp, running = u.running + d.dr,
         completed = u.completed + d.dc, failed = u.failed + d.df, version = u.version + 1,
         head_task_id = CASE WHEN d.release THEN d.head_id ELSE u.head_task_id END,
         available_at = CASE WHEN d.release THEN d.available_at ELSE u.available_at END,
         retrying = CASE WHEN d.release THEN d.retrying ELSE u.retrying END,
         lease_owner = CASE WHEN d.release THEN NULL ELSE u.lease_owner END,
         lease_expires_at = CASE WHEN d.release THEN NULL ELSE u.lease_expires_at END,
         claimed_through = CASE WHEN d.release THEN NULL ELSE u.claimed_through END
       FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::integer[], $6::boolean[],
                   $7::bigint[], $8::bigint[], $9::integer[])
         AS d(id, dp, dr, dc, df, release, head_id, available_at, retrying)
       WHERE u.id = ANY($1::bigint[]) AND u.id = d.id`,
      [
        changes.map((c) => c.unitId),
        changes.map((c) => c.delta.pending),
        changes.map((c) => c.delta.running),
        changes.map((c) => c.delta.completed),
        changes.map((c) => c.delta.failed),
        changes.map((c) => c.release !== undefined),
        heads.map((h) => h.headId),
        heads.map((h) => h.availableAt),
        heads.map((h) => h.headRetrying),
      ],
    );
  }
  // Webhook events, in this transaction: tasks failed for good, units drained (and sessions idle).
  for (const f of finished) {
    const unit = units.get(f.unitId);
    if (f.state === 'failed' && unit)
      await recordEvent(db, taskFailed(keyOf(unit), f.id, f.error ?? '', now), now);
  }
  await settleWatches(db, finishedWatches, now);
  await recordDrained(
    db,
    changes.flatMap((c) => {
      const unit = units.get(c.unitId);
      return c.release && !c.release.head && unit ? [keyOf(unit)] : [];
    }),
    now,
  );
  // Released units: why, now that their heads are known.
  return outcomes.map((outcome): ReportResult => {
    if ('kind' in outcome) return outcome;
    if (!outcome.release) return { kind: 'kept' };
    const { head } = outcome.release;
    return { kind: 'released', reason: releaseReason(head, claimable.get(outcome.unitId) ?? 0, now) };
  });
}

/** Extends the leases still held; returns those that were lost. */
export async function renewLeases(
  db: Db,
  { owner, leaseMs, leases }: WorkerRequest & { readonly leases: readonly Lease[] },
  now: number,
): Promise<Lease[]> {
  if (leases.length === 0) return [];
  const renewed = await db.query<{ id: number }>(
    `UPDATE work_units u SET lease_expires_at = $1
     FROM unnest($2::bigint[], $3::bigint[]) AS l(id, token)
     WHERE u.id = l.id AND u.lease_token = l.token AND u.lease_owner = $4 AND u.lease_expires_at >= $5
     RETURNING u.id`,
    [now + leaseMs, leases.map((l) => l.unitId), leases.map((l) => l.token), owner, now],
  );
  const kept = new Set(renewed.rows.map((r) => r.id));
  return leases.filter((lease) => !kept.has(lease.unitId));
}
