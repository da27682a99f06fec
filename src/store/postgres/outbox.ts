/**
 * The outbox on PostgreSQL (docs/webhooks.md): the webhook events a queue change causes, written
 * in the transaction that causes them: an event, the watches a transaction finished
 * (`messages.derived`), and the units it drained (`queue.empty`, `session.idle`). Two transactions
 * that finish the last two tasks of one watch, or drain the last two units of one session, are
 * ordered by a lock, so each event is written once.
 */
import { queueEmpty, sessionIdle, type WebhookEvent } from '../../domain/webhook-events.ts';
import type { WorkUnitKey } from '../../domain/work-unit-key.ts';
import {
  insertEventSql,
  insertEventValues,
  type SettledWatchRow,
  settleWatchesSql,
  watchEvent,
  watchOutcomesSql,
} from '../webhook-sql.ts';
import { type Db, one } from './connection.ts';

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
export async function recordDrained(db: Db, keys: readonly WorkUnitKey[], now: number): Promise<void> {
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
