/**
 * Claims on PostgreSQL (see `../store.ts` for the contract): ready units are found on partial
 * indexes lane by lane (`claimLanes`), locked with `SKIP LOCKED` (two processes never claim the
 * same unit), leased, their heads started and the tasks after them read, with the messages those
 * tasks cover; batched task types are claimed by batch windows. Every function runs inside the
 * caller's transaction.
 */
import type { Message } from '../../domain/model.ts';
import type { TaskType } from '../../domain/work-unit-key.ts';
import {
  availableAt,
  type BatchPolicies,
  type BatchPolicy,
  type BatchWindow,
  batchSize,
  claimLanes,
  READINESS,
  type Readiness,
} from '../queue-plan.ts';
import {
  type Head,
  keyOf,
  type MessageRow,
  messageOf,
  messagesOfTask,
  taskRecordOf,
  type UnitRow,
} from '../rows.ts';
import type { ClaimedUnit, ClaimRequest } from '../store.ts';
import type { Db } from './connection.ts';
import type { TaskRowData } from './queue.ts';

const TASK = 'id, unit_id, message_id, state, payload, runs, failures, last_error, created_at, tokens';

/** A message as a claim reads it (the `messages` column of `claimUnits`), with where it belongs. */
type ClaimedMessage = MessageRow & { workspace_id: string; session_id: string };

const MESSAGE = 'm.id, m.workspace_id, m.session_id, m.peer_id, m.seq, m.content, m.created_at, m.metadata';

/**
 * The messages the claimed tasks cover, by task id: the representation tasks' messages come with
 * the claim (`joined`) or from one query; one query per summary task for its range (a summary comes
 * once per many messages).
 */
async function loadMessages(
  db: Db,
  tasks: readonly { row: TaskRowData; unit: UnitRow }[],
  joined?: readonly ClaimedMessage[],
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
    const found =
      joined ??
      (
        await db.query<ClaimedMessage>(`SELECT ${MESSAGE} FROM messages m WHERE m.id = ANY($1::bigint[])`, [
          [...wanted.keys()],
        ])
      ).rows;
    for (const m of found) {
      for (const taskId of wanted.get(Number(m.id)) ?? [])
        byTask.set(taskId, [messageOf(m, m.workspace_id, m.session_id)]);
    }
  }
  return byTask;
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
 * runs alone, its start committed, so a further crash is pinned on it), with the messages those
 * tasks name (a summary's range is read after).
 */
async function claimUnits(
  db: Db,
  request: ClaimRequest,
  types: readonly TaskType[],
  max: number,
  now: number,
): Promise<ClaimedUnit[]> {
  const result = await db.query(
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
            (SELECT coalesce(json_agg(m), '[]') FROM (SELECT ${MESSAGE} FROM messages m
               WHERE m.id IN (SELECT message_id FROM started UNION SELECT message_id FROM following)) m) AS messages,
            (SELECT count(*) FROM started) AS started`,
    [now, max, request.owner, now + request.leaseMs, Math.max(0, request.prefetch - 1), types],
  );
  const row = result.rows[0] as
    | { units: UnitRow[]; tasks: TaskRowData[]; messages: ClaimedMessage[]; started: number }
    | undefined;
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
    row.messages,
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
