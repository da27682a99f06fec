/**
 * Webhook events (docs/webhooks.md): their types and bodies, as pure functions. `queue.empty` keeps
 * Honcho's name and body: `{ type, data: { workspace_id, queue_type, session_id, observer, observed },
 * timestamp }`; the others follow the same shape. The stores write them to the outbox in the
 * transaction that causes them; the dispatcher delivers them.
 */
import type { WorkUnitKey } from './work-unit-key.ts';

export const WEBHOOK_EVENT_TYPES = [
  'queue.empty',
  'session.idle',
  'task.failed',
  'task.stuck',
  'messages.derived',
  'webhook.test',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** An event for the endpoints of `workspaceId` that receive `type`; `body` is the JSON sent. */
export interface WebhookEvent {
  readonly workspaceId: string;
  readonly type: WebhookEventType;
  readonly body: string;
}

const event = (workspaceId: string, type: WebhookEventType, data: object, now: number): WebhookEvent => ({
  workspaceId,
  type,
  body: JSON.stringify({ type, data, timestamp: new Date(now).toISOString() }),
});

const unitData = (key: WorkUnitKey) => ({
  workspace_id: key.workspaceId,
  queue_type: key.taskType,
  session_id: key.sessionId,
  observer: key.observerId,
  observed: key.senderId,
});

/** A work unit drained: nothing of it is pending or running (Honcho's `queue.empty`). */
export const queueEmpty = (key: WorkUnitKey, now: number): WebhookEvent =>
  event(key.workspaceId, 'queue.empty', unitData(key), now);

/** Every task of a session is finished. */
export const sessionIdle = (workspaceId: string, sessionId: string, now: number): WebhookEvent =>
  event(workspaceId, 'session.idle', { workspace_id: workspaceId, session_id: sessionId }, now);

/** A task failed for good. */
export const taskFailed = (key: WorkUnitKey, taskId: number, error: string, now: number): WebhookEvent =>
  event(key.workspaceId, 'task.failed', { ...unitData(key), task_id: String(taskId), error }, now);

/** A task has run longer than its type's stuck time (once per attempt). */
export const taskStuck = (key: WorkUnitKey, taskId: number, runningMs: number, now: number): WebhookEvent =>
  event(
    key.workspaceId,
    'task.stuck',
    { ...unitData(key), task_id: String(taskId), running_ms: Math.round(runningMs) },
    now,
  );

/** A watched `addMessages` call (`notifyWhenDerived`): every task its messages created has finished. */
export const messagesDerived = (
  watch: {
    readonly id: number;
    readonly workspaceId: string;
    readonly sessionId: string;
    readonly messageIds: readonly string[];
    readonly completed: number;
    readonly failed: number;
  },
  now: number,
): WebhookEvent =>
  event(
    watch.workspaceId,
    'messages.derived',
    {
      workspace_id: watch.workspaceId,
      session_id: watch.sessionId,
      watch_id: String(watch.id),
      message_ids: watch.messageIds,
      completed: watch.completed,
      failed: watch.failed,
    },
    now,
  );

/** What `testWebhook` sends. */
export const webhookTest = (workspaceId: string, now: number): WebhookEvent =>
  event(workspaceId, 'webhook.test', { workspace_id: workspaceId }, now);

/** The `events` column of an endpoint: its types between commas, so one LIKE finds a type. */
export const eventsColumn = (types: readonly WebhookEventType[]): string =>
  `,${[...new Set(types)].join(',')},`;
export const eventsOf = (column: string): WebhookEventType[] =>
  column.split(',').filter(Boolean) as WebhookEventType[];
