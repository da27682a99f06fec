/**
 * The webhook outbox's statements, shared by both stores (the same tables and columns;
 * `placeholder(n)` writes the store's n-th parameter). See `../domain/webhook-events.ts` for the events
 * and docs/webhooks.md for the delivery rules.
 */
import { eventsOf, messagesDerived, type WebhookEventType } from '../domain/webhook-events.ts';
import type { DueDelivery, WebhookEndpoint, WebhookEndpointInfo } from './store.ts';

type Placeholder = (n: number) => string;

/** SQLite's placeholders for these statements: named, since some repeat (`@p1` ...). */
export const sqliteParam: Placeholder = (n) => `@p${n}`;
/** Values as SQLite's named parameters (`sqliteParam`). */
export const sqliteValues = (values: readonly unknown[]): Record<string, unknown> =>
  Object.fromEntries(values.map((value, i) => [`p${i + 1}`, value]));

/**
 * One event to the workspace's endpoints that receive its type, or to `endpointId` whatever it
 * receives (a test event: its type is no endpoint's, so only that endpoint matches). With
 * `whenSessionIdle`, only if the session (value 7) has nothing pending or running: that check is
 * read only for a matching endpoint, so a workspace without endpoints costs one index probe.
 * Values: type, body, now, workspace, `%,type,%`, endpoint id or null[, session].
 */
export const insertEventSql = (p: Placeholder, whenSessionIdle = false) =>
  `INSERT INTO webhook_deliveries (endpoint_id, type, payload, created_at, next_attempt_at)
   SELECT e.id, ${p(1)}, ${p(2)}, ${p(3)}, ${p(3)} FROM webhook_endpoints e
   WHERE e.workspace_id = ${p(4)} AND (e.events LIKE ${p(5)} OR e.id = ${p(6)})${
     whenSessionIdle
       ? ` AND (SELECT coalesce(sum(w.pending + w.running), 0) FROM work_units w
              WHERE w.workspace_id = ${p(4)} AND w.session_id = ${p(7)}) = 0`
       : ''
   }`;

/** Values of `insertEventSql`. */
export const insertEventValues = (
  event: { readonly workspaceId: string; readonly type: WebhookEventType; readonly body: string },
  now: number,
  endpointId: number | null = null,
) => [event.type, event.body, now, event.workspaceId, `%,${event.type},%`, endpointId];

/** A watch's row. Values: `NewWatch.values`. */
export const insertWatchSql = (p: Placeholder) =>
  `INSERT INTO derivation_watches (workspace_id, session_id, message_ids, created_at, derived_at)
   VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}) RETURNING id`;

/**
 * The watch of a `notifyWhenDerived` call that made `tasks` tasks: its row's values (workspace,
 * session, message ids as JSON, now, derived at) and, for a call that made none (derived at once),
 * the event to write beside it once its id is known.
 */
export function newWatch(
  workspaceId: string,
  sessionId: string,
  messageIds: readonly string[],
  tasks: number,
  now: number,
) {
  const derivedAt = tasks === 0 ? now : null;
  return {
    values: [workspaceId, sessionId, JSON.stringify(messageIds), now, derivedAt],
    eventOf: (id: number) =>
      derivedAt === null
        ? null
        : messagesDerived({ id, workspaceId, sessionId, messageIds, completed: 0, failed: 0 }, now),
  };
}

/**
 * Marks derived the watches (`notifyWhenDerived` calls) among `ids` whose tasks are all finished,
 * each once: the statement a transaction that finished tasks of a watch runs. Values: now, the
 * watch ids (`idsIn` reads them as the store's list: a JSON array or a bigint[]).
 */
export const settleWatchesSql = (p: Placeholder, idsIn: string) =>
  `UPDATE derivation_watches SET derived_at = ${p(1)}
   WHERE id IN (${idsIn}) AND derived_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.watch_id = derivation_watches.id AND t.finished_at IS NULL)
   RETURNING id, workspace_id, session_id, message_ids`;

/**
 * How a derived watch's tasks ended, as the API counts them: `completed` every finished task (failed
 * ones too), `failed` the part that failed for good. Values: watch id.
 */
export const watchOutcomesSql = (p: Placeholder) =>
  `SELECT count(*) FILTER (WHERE state IN ('succeeded', 'failed')) AS completed,
     count(*) FILTER (WHERE state = 'failed') AS failed
   FROM tasks WHERE watch_id = ${p(1)}`;

export interface SettledWatchRow {
  id: number;
  workspace_id: string;
  session_id: string;
  message_ids: string;
}

/** The `messages.derived` event of a watch `settleWatchesSql` returned. */
export const watchEvent = (
  row: SettledWatchRow,
  outcomes: { completed: number | string; failed: number | string } | undefined,
  now: number,
) =>
  messagesDerived(
    {
      id: Number(row.id),
      workspaceId: row.workspace_id,
      sessionId: row.session_id,
      messageIds: JSON.parse(row.message_ids) as string[],
      completed: Number(outcomes?.completed ?? 0),
      failed: Number(outcomes?.failed ?? 0),
    },
    now,
  );

/** The watch ids among finished tasks' `watch_id`s (none, mostly: one check, no statement). */
export const watchIdsOf = (rows: readonly ({ watch_id: number | string | null } | undefined)[]): number[] => [
  ...new Set(rows.flatMap((r) => (r && r.watch_id !== null ? [Number(r.watch_id)] : []))),
];

/**
 * Retention of the outbox: settled deliveries (delivered or given up) and derived watches created
 * before a time, at most a batch of each. Values: before, limit.
 */
export const pruneOutboxSql = (p: Placeholder, lock = '') => [
  `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
     WHERE state <> 'pending' AND created_at < ${p(1)} LIMIT ${p(2)}${lock})`,
  `DELETE FROM derivation_watches WHERE id IN (SELECT id FROM derivation_watches
     WHERE derived_at IS NOT NULL AND created_at < ${p(1)} LIMIT ${p(2)}${lock})`,
];

/**
 * Registers an endpoint unless its workspace has `max` already (nothing returned then). Values:
 * workspace, url, events column, secret, now, max; `cast(n, type)` types a parameter for the store.
 */
export const insertEndpointSql = (p: Placeholder, cast: (n: number, type: string) => string = p) =>
  `INSERT INTO webhook_endpoints (workspace_id, url, events, secret, created_at)
   SELECT ${cast(1, 'text')}, ${cast(2, 'text')}, ${cast(3, 'text')}, ${cast(4, 'text')}, ${cast(5, 'bigint')}
   WHERE (SELECT count(*) FROM webhook_endpoints WHERE workspace_id = ${p(1)}) < ${cast(6, 'integer')}
   RETURNING id, workspace_id, url, events, created_at`;

export const listEndpointsSql = (p: Placeholder) =>
  `SELECT e.id, e.workspace_id, e.url, e.events, e.created_at,
     (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending') AS pending,
     (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'delivered') AS delivered,
     (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'failed') AS failed,
     (SELECT d.last_error FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.last_error IS NOT NULL
        ORDER BY d.id DESC LIMIT 1) AS last_error,
     (SELECT max(d.delivered_at) FROM webhook_deliveries d WHERE d.endpoint_id = e.id) AS last_delivered_at
   FROM webhook_endpoints e WHERE e.workspace_id = ${p(1)} ORDER BY e.id`;

/** Due deliveries, oldest due first (a claim takes at most one per endpoint). Values: now, limit. */
export const dueDeliveriesSql = (p: Placeholder, lock: string) =>
  `SELECT d.id, d.endpoint_id, e.url, e.secret, d.type, d.payload, d.attempts, d.created_at
   FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
   WHERE d.state = 'pending' AND d.next_attempt_at <= ${p(1)} AND (d.lease_until IS NULL OR d.lease_until < ${p(1)})
   ORDER BY d.next_attempt_at, d.id LIMIT ${p(2)}${lock}`;

export interface EndpointRow {
  id: number;
  workspace_id: string;
  url: string;
  events: string;
  created_at: number;
}

export const endpointOf = (row: EndpointRow): WebhookEndpoint => ({
  id: Number(row.id),
  workspaceId: row.workspace_id,
  url: row.url,
  events: eventsOf(row.events),
  createdAt: Number(row.created_at),
});

export const endpointInfoOf = (
  row: EndpointRow & {
    pending: number;
    delivered: number;
    failed: number;
    last_error: string | null;
    last_delivered_at: number | null;
  },
): WebhookEndpointInfo => ({
  ...endpointOf(row),
  pending: Number(row.pending),
  delivered: Number(row.delivered),
  failed: Number(row.failed),
  lastError: row.last_error,
  lastDeliveredAt: row.last_delivered_at === null ? null : Number(row.last_delivered_at),
});

export interface DueRow {
  id: number;
  endpoint_id: number;
  url: string;
  secret: string;
  type: string;
  payload: string;
  attempts: number;
  created_at: number;
}

/** The first due delivery of each endpoint not busy, at most `max`. */
export function pickDue(rows: readonly DueRow[], busy: readonly number[], max: number): DueDelivery[] {
  const taken = new Set(busy.map(Number));
  const picked: DueDelivery[] = [];
  for (const row of rows) {
    const endpointId = Number(row.endpoint_id);
    if (picked.length >= max || taken.has(endpointId)) continue;
    taken.add(endpointId);
    picked.push({
      id: Number(row.id),
      endpointId,
      url: row.url,
      secret: row.secret,
      type: row.type as WebhookEventType,
      body: row.payload,
      attempts: Number(row.attempts),
      createdAt: Number(row.created_at),
    });
  }
  return picked;
}
