import { authorize } from '../auth/authorize.ts';
import type { Scope } from '../auth/scope.ts';
import { statusFilterInput } from '../domain/inputs.ts';
import type { Attributes, Message, Peer, Session, SessionPeer, Workspace } from '../domain/model.ts';
import type { StatusView } from '../live/status-view.ts';
import type { Progress } from '../status/completion-rate.ts';
import type { SessionStatusCounts, StatusCounts } from '../status/counts.ts';
import type { StatusQuery } from '../status/status-filter.ts';
import type { AppendMessagesResult } from '../store/store.ts';
import { builder, type Types } from './builder.ts';
import type { ApiContext } from './context.ts';

/** Honcho's attributes, and an upsert's `created`, shared by Workspace, Peer and Session. */
function attributeFields<T extends Attributes>(t: PothosSchemaTypes.ObjectFieldBuilder<Types, T>) {
  return {
    createdAt: t.string({
      description: 'When it was first created (ISO 8601).',
      resolve: (o) => new Date(o.createdAt).toISOString(),
    }),
    metadata: t.field({
      type: 'JSONObject',
      description: 'Free-form, stored as given.',
      resolve: (o) => o.metadata,
    }),
    configuration: t.field({
      type: 'JSONObject',
      description: "Honcho's configuration object, stored as given.",
      resolve: (o) => o.configuration,
    }),
    created: t.boolean({
      nullable: true,
      description: "In an upsert's answer: whether this call created it. Null elsewhere.",
      resolve: (o) => ('created' in o && typeof o.created === 'boolean' ? o.created : null),
    }),
  };
}

export const PeerType = builder.objectRef<Peer>('Peer').implement({
  description: 'A participant (user or agent).',
  fields: (t) => ({
    id: t.exposeID('id'),
    workspaceId: t.exposeID('workspaceId'),
    observeMe: t.exposeBoolean('observeMe', {
      description: 'Whether tasks that derive facts about this peer are created.',
    }),
    ...attributeFields(t),
  }),
});

export const SessionPeerType = builder.objectRef<SessionPeer>('SessionPeer').implement({
  description: "A peer's membership of a session.",
  fields: (t) => ({
    peerId: t.exposeID('peerId'),
    observeMe: t.exposeBoolean('observeMe', {
      nullable: true,
      description: "Session-level observeMe; null inherits the peer's own value.",
    }),
    observeOthers: t.exposeBoolean('observeOthers', {
      description: "Whether this peer observes the session's other peers.",
    }),
  }),
});

export const DerivationSettingsType = builder
  .objectRef<Workspace['settings']>('DerivationSettings')
  .implement({
    description: 'Overrides of the derivation defaults; a null field inherits.',
    fields: (t) => ({
      reasoningEnabled: t.boolean({ nullable: true, resolve: (s) => s.reasoningEnabled ?? null }),
      summariesEnabled: t.boolean({ nullable: true, resolve: (s) => s.summariesEnabled ?? null }),
      messagesPerShortSummary: t.int({ nullable: true, resolve: (s) => s.messagesPerShortSummary ?? null }),
      messagesPerLongSummary: t.int({ nullable: true, resolve: (s) => s.messagesPerLongSummary ?? null }),
    }),
  });

export const WorkspaceType = builder.objectRef<Workspace>('Workspace').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    settings: t.field({ type: DerivationSettingsType, resolve: (w) => w.settings }),
    ...attributeFields(t),
  }),
});

export const MessageType = builder.objectRef<Message>('Message').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    sessionId: t.exposeID('sessionId'),
    peerId: t.exposeID('peerId'),
    seq: t.exposeInt('seq', { description: '1-based sequence number within the session.' }),
    content: t.exposeString('content'),
    createdAt: t.string({
      description: 'When it was stored (ISO 8601).',
      resolve: (m) => new Date(m.createdAt).toISOString(),
    }),
    metadata: t.field({
      type: 'JSONObject',
      description: 'Free-form, stored as given.',
      resolve: (m) => m.metadata,
    }),
  }),
});

export const AddMessagesPayloadType = builder
  .objectRef<AppendMessagesResult>('AddMessagesPayload')
  .implement({
    fields: (t) => ({
      messages: t.field({ type: [MessageType], resolve: (r) => [...r.messages] }),
      enqueuedTasks: t.exposeInt('enqueuedTasks', { description: 'Tasks created by these messages.' }),
      watchId: t.exposeID('watchId', {
        nullable: true,
        description:
          'With notifyWhenDerived: the `watch_id` its `messages.derived` event will carry; else null.',
      }),
    }),
  });

const COUNT_FIELDS: Record<keyof StatusCounts, string> = {
  totalWorkUnits: 'pending + inProgress + completed, always exactly.',
  completedWorkUnits: 'Finished: succeeded, or failed for good.',
  inProgressWorkUnits: 'Running in a worker right now.',
  pendingWorkUnits: 'Not finished and not running (includes tasks waiting for a retry).',
  failedWorkUnits: 'The part of completedWorkUnits that failed for good.',
  retryingWorkUnits:
    'The part of pendingWorkUnits that failed before and waits to run again (a retry); the rest of pendingWorkUnits never started, or was put back by a shutdown or crash without failing.',
};

/** The count fields (docs/api.md, and the retry count), shared by DeriverStatus and SessionDeriverStatus. */
function countFields<T>(
  t: PothosSchemaTypes.ObjectFieldBuilder<Types, T>,
  counts: (parent: T) => StatusCounts,
) {
  return Object.fromEntries(
    (Object.keys(COUNT_FIELDS) as (keyof StatusCounts)[]).map((name) => [
      name,
      t.int({ description: COUNT_FIELDS[name], resolve: (parent) => counts(parent)[name] }),
    ]),
  );
}

/** Throughput and time to idle (`completion-rate.ts`), shared by DeriverStatus and SessionDeriverStatus. */
function progressFields<T>(
  t: PothosSchemaTypes.ObjectFieldBuilder<Types, T>,
  progress: (parent: T, ctx: ApiContext) => Progress,
) {
  return {
    throughputPerSecond: t.float({
      description:
        'Tasks completed per second lately (a decaying average with a 10 s time constant; 0 after 30 s without completions).',
      resolve: (parent, _args, ctx) => progress(parent, ctx).throughputPerSecond,
    }),
    estimatedSecondsToIdle: t.int({
      nullable: true,
      description:
        'Seconds until nothing is pending or running at that throughput: 0 when idle, null while work remains and nothing completed lately.',
      resolve: (parent, _args, ctx) => progress(parent, ctx).estimatedSecondsToIdle,
    }),
  };
}

/** One session's entry of a breakdown, with the filter it was counted for. */
export type SessionEntry = SessionStatusCounts & { readonly filter: StatusQuery };

export const SessionDeriverStatusType = builder.objectRef<SessionEntry>('SessionDeriverStatus').implement({
  description: "One session's counts within a DeriverStatus.",
  fields: (t) => ({
    sessionId: t.exposeID('sessionId'),
    ...countFields(t, (s) => s),
    ...progressFields(t, (s, ctx) => ctx.status.progress(s.filter, s)),
  }),
});

export const DeriverStatusType = builder.objectRef<StatusView>('DeriverStatus').implement({
  description:
    'Counts of background tasks matching a filter. The names keep the Honcho status API wording: each "work unit" counted here is one task.',
  fields: (t) => ({
    ...countFields(t, (v) => v.counts),
    ...progressFields(t, (v, ctx) => v.progress ?? ctx.status.progress(v.filter, v.counts)),
    live: t.boolean({
      description:
        "Whether these counts follow the store's changes: false while this instance cannot hear its store (a PostgreSQL outage), when they are the last known; a subscription then gets an event with live false at once, and one with live true and exact counts when the store is back.",
      resolve: (v, _args, ctx) => (v.liveness ?? ctx.status.liveness()).live,
    }),
    notLiveReason: t.string({
      nullable: true,
      description: 'Why live is false (null while live).',
      resolve: (v, _args, ctx) => (v.liveness ?? ctx.status.liveness()).reason,
    }),
    workerProcesses: t.int({
      nullable: true,
      description:
        'Processes running workers for this store now: on SQLite this one (1) or none (WORKER_CONCURRENCY=0); on PostgreSQL every process on the database with WORKER_CONCURRENCY above 0, within half a second of one starting, stopping or dying. 0: pending tasks wait until a worker starts. null when not known (an instance attached to a Honcho, whose own deriver runs its tasks). A subscription gets an event when it changes.',
      resolve: (v, _args, ctx) => (v.workers !== undefined ? v.workers : ctx.status.workers()),
    }),
    sessions: t.field({
      type: [SessionDeriverStatusType],
      nullable: true,
      description: 'Per-session breakdown, ordered by sessionId; null when the filter names a session.',
      resolve: async (v, _args, ctx) => {
        if (v.filter.sessionId !== undefined) return null;
        return (v.sessions ?? (await ctx.status.sessions(v.filter))).map((s) => ({
          ...s,
          filter: { ...v.filter, sessionId: s.sessionId },
        }));
      },
    }),
  }),
});

export const SessionType = builder.objectRef<Session>('Session').implement({
  description: 'A conversation.',
  fields: (t) => ({
    id: t.exposeID('id'),
    workspaceId: t.exposeID('workspaceId'),
    peers: t.field({ type: [SessionPeerType], resolve: (s) => [...s.peers] }),
    messageCount: t.exposeInt('messageCount'),
    settings: t.field({ type: DerivationSettingsType, resolve: (s) => s.settings }),
    ...attributeFields(t),
    deriverStatus: t.field({
      type: DeriverStatusType,
      description: "This session's task counts; observerId and senderId narrow them (AND).",
      args: { observerId: t.arg.id(), senderId: t.arg.id() },
      validate: statusFilterInput.pick({ observerId: true, senderId: true }),
      resolve: async (session, args, ctx) => {
        const filter = {
          workspaceId: session.workspaceId,
          sessionId: session.id,
          observerId: args.observerId ?? undefined,
          senderId: args.senderId ?? undefined,
        };
        authorize(ctx.principal, { kind: 'status', ...filter });
        return { filter, counts: await ctx.status.get(filter) };
      },
    }),
  }),
});

export interface CreatedKey {
  readonly key: string;
  readonly scope: Scope;
  /** Epoch ms; `null` for a key that does not expire. */
  readonly expiresAt: number | null;
}

const scopeId = (scope: Scope, name: 'workspaceId' | 'sessionId' | 'peerId'): string | null =>
  (scope as Partial<Record<typeof name, string>>)[name] ?? null;

export const CreatedKeyType = builder.objectRef<CreatedKey>('CreatedKey').implement({
  description:
    'A minted key: send it as "Authorization: Bearer <key>" (WebSocket: connectionParams.authorization).',
  fields: (t) => ({
    key: t.exposeString('key'),
    admin: t.boolean({ resolve: (k) => k.scope.kind === 'admin' }),
    workspaceId: t.id({ nullable: true, resolve: (k) => scopeId(k.scope, 'workspaceId') }),
    sessionId: t.id({ nullable: true, resolve: (k) => scopeId(k.scope, 'sessionId') }),
    peerId: t.id({ nullable: true, resolve: (k) => scopeId(k.scope, 'peerId') }),
    expiresAt: t.string({
      nullable: true,
      description: 'When the key stops working (ISO 8601); null: it does not expire.',
      resolve: (k) => (k.expiresAt === null ? null : new Date(k.expiresAt).toISOString()),
    }),
  }),
});
