/**
 * The store contract: everything the domain, the scheduler and the status engine need from
 * durable storage. `createSqliteStore` implements it on an embedded SQLite file,
 * `createPostgresStore` on PostgreSQL for many processes (`openStore` picks one by URL); one test
 * suite holds both to it. Every method that writes runs one transaction: it either happens whole or
 * not at all.
 *
 * ## Task and lease state machine
 *
 * A task is `pending` -> `running` -> `succeeded` | `failed`, and back `running` -> `pending` on a
 * retry (to run again `delayMs` from now, by the store's clock), on a graceful release, or when its
 * unit's lease expired.
 * A work unit's *head* is its oldest unfinished task; only the head may run, so a unit's tasks
 * finish strictly in id order. An unclaimed unit stores its exact head (the claim order reads it);
 * a claimed one stores a lower bound that is made exact when the unit is released or recovered.
 *
 * A unit is claimed with a lease `{ unitId, token }`: the token grows by one at every claim and is
 * the fencing token. Every write a worker makes about a unit names the token; the store refuses it
 * when the token is stale or the lease has expired, so a worker that lost its lease can never finish
 * a task. Units are claimed oldest head first. A claim whose lease expired is recovered by the next
 * claim (and a restarted process recovers its own at once): its running task goes back to `pending`
 * and runs again (at-least-once), unless that was its `maxInterruptions`-th crash interruption: then
 * it is failed, so a task that kills its process every time cannot stop the queue.
 *
 * Each unit row carries its task counters. Every committed change of them is published as deltas
 * (`UnitChanges`) stamped with the transaction that made them, from inside that transaction's
 * commit: SQLite emits `units:changed` right after the commit; PostgreSQL's own triggers send them
 * as a NOTIFY inside the transaction, delivered if and only if it commits (the change feed hears
 * them). A read of summed counters (`sumCounters`) says which commits it saw, so a listener that
 * keeps a sum applies exactly the changes its read did not include, whatever the order they arrive.
 */

import type { Counters, CountersSnapshot, UnitChanges } from '../domain/counters.ts';
import type {
  AttributesUpdate,
  JsonObject,
  Message,
  Peer,
  Session,
  SessionPeer,
  Upserted,
  Workspace,
} from '../domain/model.ts';
import type { SettingsOverride } from '../domain/settings.ts';
import type { MessagePlan, SessionSnapshot, SummaryRange, TaskPayload } from '../domain/task-generation.ts';
import type { WebhookEvent, WebhookEventType } from '../domain/webhook-events.ts';
import type { TaskType, WorkUnitKey } from '../domain/work-unit-key.ts';
import type { TypedEmitter } from '../util/typed-emitter.ts';
import type { RateLimits } from './rate-limits.ts';

export type TaskState = 'pending' | 'running' | 'succeeded' | 'failed';

export interface StoreEvents {
  /**
   * Counters changed in a committed transaction (SQLite: emitted right after the commit;
   * PostgreSQL sends them as a NOTIFY from the transaction instead, see the file comment).
   */
  'units:changed': UnitChanges;
  /** New tasks were committed; idle workers should look for work. */
  'tasks:enqueued': { readonly count: number };
  /** Webhook deliveries were committed; the dispatcher should look for work. */
  'webhooks:enqueued': { readonly count: number };
}

/**
 * A task as handed to a worker, with what its handler needs (docs/deriver.md): its work unit's key
 * (type, workspace, session, observer, sender) and the messages it covers with their content.
 */
export interface TaskRecord {
  readonly id: number;
  readonly unitId: number;
  readonly type: TaskType;
  readonly key: WorkUnitKey;
  /** The message a representation task derives from. */
  readonly messageId: string | null;
  readonly payload: TaskPayload;
  /**
   * The messages the task covers, in `seq` order: a representation task's one message, or the
   * range a summary task summarises (`summary`). Empty only when they were deleted.
   */
  readonly messages: readonly Message[];
  /** A summary task's range and level; `null` for a representation task. */
  readonly summary: SummaryRange | null;
  /**
   * Starts the store had recorded when the task was handed over (informational: a claimed unit's
   * later tasks start in the worker before the report that records it). Use `failures` for retries.
   */
  readonly runs: number;
  /** Failed attempts before this run. */
  readonly failures: number;
  /** Estimated input tokens of its messages (batch sizes, token rate limits). */
  readonly tokens: number;
  readonly createdAt: number;
}

export interface Lease {
  readonly unitId: number;
  /** Fencing token: grows with every claim of the unit. */
  readonly token: number;
}

/**
 * A freshly claimed unit: its head task is marked running and `tasks` also holds the ones after it;
 * a batched unit's `tasks` are one batch, all marked running, for one handler call.
 */
export interface ClaimedUnit {
  readonly lease: Lease;
  readonly key: WorkUnitKey;
  /** The head (running) and up to `prefetch - 1` tasks after it, in order; or the batch. */
  readonly tasks: readonly TaskRecord[];
  /** The tasks are one batch (their type is batched, `BatchPolicy`). */
  readonly batch: boolean;
}

/** What became of an attempt. */
export type TaskOutcome =
  | { readonly kind: 'succeeded' }
  | { readonly kind: 'failed'; readonly error: string }
  /** Run again `delayMs` from now; "now" is the store's clock, shared by every process. */
  | { readonly kind: 'retry'; readonly error: string; readonly delayMs: number }
  /** Put back without counting a failure (graceful shutdown, lost lease). */
  | { readonly kind: 'requeue' };

export interface Attempt {
  readonly taskId: number;
  readonly outcome: TaskOutcome;
}

/**
 * What a worker did under one lease since its last report. A worker runs a claimed unit's tasks
 * one after another without waiting for each report to commit; reports carry the attempts in
 * order and the task now running, so one transaction covers many tasks.
 */
export interface UnitReport {
  readonly lease: Lease;
  /** Attempts that ended since the last report, in task order. */
  readonly attempts: readonly Attempt[];
  /** The task the worker is running now (started after the last attempt), or `null`. */
  readonly running: number | null;
}

/** Why a unit was released: nothing left, its head waits for a retry, or its claim budget was spent. */
export type ReleaseReason = 'drained' | 'waiting' | 'yielded';

/** What became of a unit report. */
export type ReportResult =
  /** Applied; the worker keeps the unit (its report named a running task). */
  | { readonly kind: 'kept' }
  /** Applied, and the unit was released (its report named no running task). */
  | { readonly kind: 'released'; readonly reason: ReleaseReason }
  /** The lease was stale or expired: nothing of the report was written (fencing). */
  | { readonly kind: 'lease-lost' };

export interface WorkerRequest {
  /** Identifies the worker process holding the leases. */
  readonly owner: string;
  /** Lease length from now. */
  readonly leaseMs: number;
}

export interface RecoveryRequest {
  /**
   * Crash interruptions a task may have: recovering a task interrupted for the last time fails it
   * with `interruptedError(n)` instead of running it again (a task that crashes its process on
   * every attempt must not loop forever).
   */
  readonly maxInterruptions: number;
}

export interface ClaimRequest extends WorkerRequest, RecoveryRequest {
  /** Units to claim at most. */
  readonly max: number;
  /** Tasks handed over per claimed unit (the claim budget; a batched unit's batch instead). */
  readonly prefetch: number;
  /**
   * Units of a task type to claim at most (this process's free slots for it; 0: none, for a type
   * that is rate limited or at its concurrency). A type not named is limited by `max` only.
   */
  readonly maxByType?: Readonly<Partial<Record<TaskType, number>>>;
}

/** The error of a task failed for too many crash interruptions. */
export const interruptedError = (times: number): string =>
  `interrupted ${times} times by the crash of the process running it (does it crash its process?); failed so the queue goes on`;

export interface SettleRequest extends ClaimRequest {
  readonly reports: readonly UnitReport[];
}

export interface SettleResponse {
  readonly results: readonly ReportResult[];
  readonly claimed: readonly ClaimedUnit[];
}

/** A raw task row, for inspection and tests. */
export interface TaskRow {
  readonly id: number;
  readonly key: WorkUnitKey;
  readonly state: TaskState;
  readonly runs: number;
  readonly failures: number;
  readonly lastError: string | null;
  readonly payload: TaskPayload;
  readonly messageId: string | null;
}

/** Which work units an inspection or an admin call reaches; the fields combine with AND. */
export interface UnitFilter {
  readonly workspaceId: string;
  readonly sessionId?: string | undefined;
  /** Naming a peer leaves summary units out (they have no observer or sender). */
  readonly observerId?: string | undefined;
  readonly senderId?: string | undefined;
  readonly taskType?: TaskType | undefined;
}

/** Which units a status sums: a status filter (no task type). */
export type CounterFilter = Omit<UnitFilter, 'taskType'>;

/** A page by ascending id: the rows after `afterId`, at most `limit` of them. */
export interface Page {
  readonly afterId: number | null;
  readonly limit: number;
}

/** A work unit as seen from outside (docs/api.md). */
export interface WorkUnitInfo {
  readonly id: number;
  readonly key: WorkUnitKey;
  readonly counters: Counters;
  /** When its oldest pending task was created (epoch ms); `null` when none is pending. */
  readonly oldestPendingAt: number | null;
  /** The task the store holds as running, with when it started and which attempt it is. */
  readonly running: { readonly taskId: number; readonly startedAt: number; readonly attempt: number } | null;
  /** When a unit waiting for a retry may run again (epoch ms); `null` when not waiting. */
  readonly retryAt: number | null;
  /** The error of its newest task that has one (a failure, or a failed attempt). */
  readonly lastError: string | null;
  /**
   * When it may be claimed (epoch ms): its retry time, or when its batch is due; `null` with
   * nothing to do. Meaningful while it is not leased.
   */
  readonly claimableAt: number | null;
  /** A worker holds it now. */
  readonly leased: boolean;
  /** Estimated tokens of its pending tasks (of its first 1,000). */
  readonly pendingTokens: number;
  /**
   * Its watermark: the highest message `seq` up to which every task of it is finished (the
   * session's message count when it has nothing unfinished).
   */
  readonly derivedThroughSeq: number | null;
}

/** A task that failed for good. */
export interface FailedTask {
  readonly id: number;
  readonly key: WorkUnitKey;
  readonly messageId: string | null;
  readonly payload: TaskPayload;
  readonly error: string;
  /** Times it was started (0 for a task cancelled before it ran). */
  readonly attempts: number;
  readonly createdAt: number;
  readonly failedAt: number;
}

/** What `cancelPendingTasks` did. */
export interface CancelResult {
  readonly cancelled: number;
  /**
   * Pending tasks left alone because a worker holds them (handed over with its unit's claim);
   * they run, and the unit's tasks after them were cancelled.
   */
  readonly leftWithWorkers: number;
}

/** The error a cancelled task is failed with. */
export const CANCELLED_ERROR = 'cancelled before it ran (cancelPendingTasks)';

export interface AppendMessagesRequest {
  readonly workspaceId: string;
  readonly sessionId: string;
  readonly messages: readonly {
    readonly peerId: string;
    readonly content: string;
    /** @default {} */
    readonly metadata?: JsonObject | undefined;
  }[];
  /**
   * Create the session (and its workspace) when it does not exist, as Honcho does for a message;
   * its senders join it. @default false: `NotFoundError` for an unknown session
   */
  readonly createSession?: boolean | undefined;
  /**
   * Watch the call: when every task its messages created has finished (succeeded, failed for good
   * or cancelled), the transaction finishing the last one writes a `messages.derived` event
   * (docs/webhooks.md); at once when they created none.
   */
  readonly notifyWhenDerived?: boolean;
}

export interface AppendMessagesResult {
  readonly messages: readonly Message[];
  readonly enqueuedTasks: number;
  /** The watch of a `notifyWhenDerived` call (the event's `watch_id`), else null. */
  readonly watchId: string | null;
}

export interface UpsertSessionRequest {
  readonly workspaceId: string;
  readonly id: string;
  readonly settings?: SettingsOverride | undefined;
  /** Honcho's metadata and configuration: each given one replaces the stored one. */
  readonly attributes?: AttributesUpdate | undefined;
}

/** Which tasks of which messages a derivation read covers (docs/api.md, "Your messages, derived"). */
export interface MessageTasksRequest {
  readonly workspaceId: string;
  /** Message ids as the API gives them (decimal strings). */
  readonly messageIds: readonly string[];
  /** Only tasks of this observer's units (summaries have none). */
  readonly observerId?: string | undefined;
  /** Only tasks of these types. @default every type */
  readonly taskTypes?: readonly TaskType[] | undefined;
}

/** The messages found (in the workspace) and every task they created that the request covers. */
export interface MessageTasks {
  readonly messages: readonly { readonly id: string; readonly sessionId: string; readonly seq: number }[];
  readonly tasks: readonly {
    readonly messageId: string;
    readonly state: TaskState;
    readonly failures: number;
    readonly key: WorkUnitKey;
  }[];
}

/** A registered webhook endpoint (docs/webhooks.md); the secret is never read back. */
export interface WebhookEndpoint {
  readonly id: number;
  readonly workspaceId: string;
  readonly url: string;
  readonly events: readonly WebhookEventType[];
  readonly createdAt: number;
}

/** An endpoint with what its deliveries did. */
export interface WebhookEndpointInfo extends WebhookEndpoint {
  readonly pending: number;
  readonly delivered: number;
  /** Deliveries given up on (not delivered within a day). */
  readonly failed: number;
  readonly lastError: string | null;
  readonly lastDeliveredAt: number | null;
}

/** A delivery due now, leased to the dispatcher that claimed it. */
export interface DueDelivery {
  readonly id: number;
  readonly endpointId: number;
  readonly url: string;
  readonly secret: string;
  readonly type: WebhookEventType;
  readonly body: string;
  readonly attempts: number;
  readonly createdAt: number;
}

/** What became of a delivery attempt: delivered, or retried at `retryAt` (`null`: given up). */
export type DeliveryOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: string; readonly retryAt: number | null };

export interface Store {
  /** Announces committed changes. Listeners run after the commit. */
  readonly events: TypedEmitter<StoreEvents>;

  /**
   * Rate limits and provider pauses of task types (`rate-limits.ts`): shared by every process on
   * PostgreSQL, this process's own on SQLite.
   */
  readonly rateLimits: RateLimits;

  /** Gets or creates a workspace; given settings are merged in, given attributes replace the stored ones. */
  upsertWorkspace(
    id: string,
    settings?: SettingsOverride,
    attributes?: AttributesUpdate,
  ): Promise<Upserted<Workspace>>;
  getWorkspace(id: string): Promise<Workspace | null>;

  /** Creates the workspace if needed; `observeMe` undefined keeps the current value (true when new). */
  upsertPeer(
    workspaceId: string,
    id: string,
    observeMe?: boolean,
    attributes?: AttributesUpdate,
  ): Promise<Upserted<Peer>>;
  getPeer(workspaceId: string, id: string): Promise<Peer | null>;

  /**
   * Creates or updates a session, creating the workspace and missing peers. `planMembers` gets the
   * current members and returns the new ones (it may throw to reject; nothing is written then).
   */
  upsertSession(
    request: UpsertSessionRequest,
    peerIds: readonly string[],
    planMembers: (current: readonly SessionPeer[]) => readonly SessionPeer[],
  ): Promise<Upserted<Session>>;
  getSession(workspaceId: string, id: string): Promise<Session | null>;

  /**
   * Appends messages and their tasks in one transaction. `plan` turns the session snapshot into
   * the exact rows to write. Throws `NotFoundError` when the session does not exist.
   */
  appendMessages(
    request: AppendMessagesRequest,
    plan: (snapshot: SessionSnapshot) => MessagePlan,
  ): Promise<AppendMessagesResult>;
  listMessages(
    workspaceId: string,
    sessionId: string,
    options?: { afterSeq?: number; limit?: number },
  ): Promise<Message[]>;

  /** Claims up to `max` ready units, oldest head first, starting each unit's head task. */
  claim(request: ClaimRequest): Promise<readonly ClaimedUnit[]>;
  /**
   * Applies unit reports (a report with `running: null` releases its unit) and claims up to `max`
   * more units: one transaction.
   */
  settle(request: SettleRequest): Promise<SettleResponse>;
  /**
   * Recovers every lease `owner` holds, expired or not: a process restarted with the identity of
   * one that died takes its units back at once instead of waiting for the leases to expire. Their
   * running tasks were interrupted by the crash (see `RecoveryRequest`). Returns the units freed.
   */
  recoverLeases(request: RecoveryRequest & { readonly owner: string }): Promise<number>;
  /** Extends the leases still held; returns those that were lost. */
  renewLeases(request: WorkerRequest & { readonly leases: readonly Lease[] }): Promise<Lease[]>;

  /**
   * The summed counters of the units `filter` matches (with the per-session breakdown when
   * `sessions`), and which commits that read saw. One indexed aggregate: its cost grows with the
   * units the filter matches, never with the rest of the store.
   */
  sumCounters(filter: CounterFilter, options: { readonly sessions: boolean }): Promise<CountersSnapshot>;
  /** Pending, retrying and running tasks per task type (read from the units with work left). */
  liveCountsByTaskType(): Promise<Map<TaskType, Counters>>;
  /**
   * Work units matching `filter`, by id; `includeIdle` also lists units with nothing pending or
   * running. Paging by id is stable: a unit never changes its id or disappears.
   */
  listWorkUnits(filter: UnitFilter, page: Page & { readonly includeIdle: boolean }): Promise<WorkUnitInfo[]>;
  /** How many units `listWorkUnits` would list in all, counted up to `upTo` (a bounded read). */
  countWorkUnits(
    filter: UnitFilter,
    options: { readonly includeIdle: boolean; readonly upTo: number },
  ): Promise<number>;
  /** Tasks of matching units that failed for good, by id. */
  listFailedTasks(filter: UnitFilter, page: Page): Promise<FailedTask[]>;
  /**
   * Puts failed tasks of matching units (only `taskIds` when given) back in line: each becomes a
   * new pending task at the end of its unit, with a fresh attempt budget. Returns how many.
   */
  retryFailedTasks(filter: UnitFilter, taskIds?: readonly number[]): Promise<number>;
  /**
   * Fails the pending tasks of matching units with `CANCELLED_ERROR` (they count as failed and
   * can be retried), except those a worker already holds; a running task is not touched.
   */
  cancelPendingTasks(filter: UnitFilter): Promise<CancelResult>;

  /**
   * The tasks `request.messageIds` created (of those in the workspace; others are left out of
   * `messages`), through the index of tasks by message: its cost grows with those tasks only.
   */
  listMessageTasks(request: MessageTasksRequest): Promise<MessageTasks>;
  /**
   * The session's watermark: the highest message `seq` up to which every task of the units the
   * filter matches is finished (`null` for an unknown session).
   */
  derivedThroughSeq(filter: CounterFilter & { readonly sessionId: string }): Promise<number | null>;

  /**
   * Running tasks that started before `startedBefore[type]` (epoch ms) in the units `filter`
   * matches (every unit without one), by task type: stuck tasks. Reads the running tasks only.
   */
  countStuckTasks(
    startedBefore: Readonly<Partial<Record<TaskType, number>>>,
    filter?: CounterFilter,
  ): Promise<Map<TaskType, number>>;

  /**
   * Registers a webhook endpoint of a workspace (docs/webhooks.md); null, writing nothing, when the
   * workspace has `maxPerWorkspace` already.
   */
  createWebhook(input: {
    readonly workspaceId: string;
    readonly url: string;
    readonly events: readonly WebhookEventType[];
    readonly secret: string;
    readonly maxPerWorkspace: number;
  }): Promise<WebhookEndpoint | null>;
  /** The workspace's endpoints with their deliveries' figures, by id. */
  listWebhooks(workspaceId: string): Promise<WebhookEndpointInfo[]>;
  /** Removes an endpoint of the workspace and its deliveries; false when there is none. */
  removeWebhook(workspaceId: string, id: number): Promise<boolean>;
  /** Writes an event for the workspace's endpoints that receive it; returns the deliveries made. */
  enqueueWebhookEvent(event: WebhookEvent, endpointId?: number): Promise<number>;
  /**
   * Leases up to `max` due deliveries for `leaseMs`, at most one per endpoint and none of
   * `busyEndpoints` (an endpoint gets one delivery at a time, so a slow one holds only itself).
   */
  claimWebhookDeliveries(request: {
    readonly max: number;
    readonly leaseMs: number;
    readonly busyEndpoints: readonly number[];
  }): Promise<DueDelivery[]>;
  /** Records a delivery attempt's outcome. */
  settleWebhookDelivery(id: number, outcome: DeliveryOutcome): Promise<void>;
  /** Deliveries not delivered yet (pending, not given up), over every endpoint. */
  pendingWebhookDeliveries(): Promise<number>;

  /** When the oldest pending task of any unit was created (epoch ms); `null` when none is pending. */
  oldestPendingAt(): Promise<number | null>;

  /** Ids of the workspaces that have work units (any, finished too), by id, at most `limit`. */
  listWorkspaces(limit: number): Promise<string[]>;

  /**
   * Deletes up to `limit` task rows finished before `finishedBefore`, and up to `limit` of each of
   * the webhook outbox's settled deliveries (delivered or given up) and derived watches created
   * before it: one short transaction, so pruning in batches never holds the queue up; counters are
   * untouched. Returns how many rows went.
   */
  pruneFinished(finishedBefore: number, limit: number): Promise<number>;
  /** Raw task rows, in id order (inspection and tests). */
  listTasks(filter?: { readonly state?: TaskState }): Promise<TaskRow[]>;

  /**
   * Proves the store can commit a write now (readiness). Throws `StoreUnavailableError` naming the
   * fault when it cannot (read-only or full disk, database file removed or replaced).
   */
  probe(): Promise<void>;

  close(): Promise<void>;
}
