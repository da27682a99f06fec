/** Query, Mutation and Subscription roots. Every argument set is validated with the domain's schemas. */

import type { ArgBuilder } from '@pothos/core';
import { z } from 'zod';
import { authorize, reaches } from '../auth/authorize.ts';
import { KEY_EXPIRED, untilExpiry } from '../auth/expiring-stream.ts';
import { createKeyInput } from '../auth/key-input.ts';
import {
  addMessagesInput,
  lookupInput,
  removeSessionPeersInput,
  statusFilterInput,
  upsertPeerInput,
  upsertSessionInput,
  upsertWorkspaceInput,
} from '../domain/inputs.ts';
import { limits } from '../domain/limits.ts';
import { AuthDisabledError, UnauthenticatedError } from '../errors.ts';
import type { StatusView } from '../live/status-view.ts';
import { builder, type Types } from './builder.ts';
import { toQuery, workspaceOf } from './filter-args.ts';
import { selectsField } from './selection.ts';
import {
  AddMessagesPayloadType,
  CreatedKeyType,
  DeriverStatusType,
  PeerType,
  SessionType,
  WorkspaceType,
} from './types.ts';

export const SessionPeerInput = builder.inputType('SessionPeerInput', {
  fields: (t) => ({
    peerId: t.id({ required: true }),
    observeMe: t.boolean({
      description: "null inherits the peer's own observeMe; omitted keeps the current value.",
    }),
    observeOthers: t.boolean({ description: 'omitted keeps the current value (false for a new member).' }),
  }),
});

export const MessageInput = builder.inputType('MessageInput', {
  fields: (t) => ({
    peerId: t.id({ required: true }),
    content: t.string({ required: true, description: '0 to 65,535 characters; longer is rejected.' }),
    metadata: t.field({
      type: 'JSONObject',
      description: 'Free-form, stored as given (at most 16 KiB as JSON).',
    }),
  }),
});

/** Honcho's `metadata` and `configuration` arguments of the upserts: each given one replaces the stored one. */
const attributeArgs = (arg: ArgBuilder<Types>) => ({
  metadata: arg({
    type: 'JSONObject',
    description: 'Replaces the stored metadata (at most 16 KiB as JSON); omitted or null keeps it.',
  }),
  configuration: arg({
    type: 'JSONObject',
    description:
      'Replaces the stored Honcho configuration (at most 16 KiB as JSON); omitted or null keeps it.',
  }),
});

export const DerivationSettingsInput = builder.inputType('DerivationSettingsInput', {
  description: 'Omitted fields keep their value; null clears an override (inherit).',
  fields: (t) => ({
    reasoningEnabled: t.boolean(),
    summariesEnabled: t.boolean(),
    messagesPerShortSummary: t.int(),
    messagesPerLongSummary: t.int(),
  }),
});

builder.queryType({
  fields: (t) => ({
    deriverStatus: t.field({
      type: DeriverStatusType,
      description: 'Task counts for a filter (all optional, combined with AND). Unknown ids give zeros.',
      // t.validate hands the resolver the schema's output (defaults applied), validated once.
      args: t.validate(
        {
          workspaceId: t.arg.id({ description: 'Omitted means "default".' }),
          observerId: t.arg.id(),
          senderId: t.arg.id(),
          sessionId: t.arg.id(),
        },
        statusFilterInput,
      ),
      resolve: async (_root, args, ctx, info) => {
        const filter = toQuery(args);
        authorize(ctx.principal, { kind: 'status', ...filter });
        // A breakdown asked for too: one read of the store serves both (when the filter is cold).
        const sessions = selectsField(info, 'sessions');
        return { filter, counts: await ctx.status.get(filter, { sessions }) };
      },
    }),
    session: t.field({
      type: SessionType,
      nullable: true,
      args: { workspaceId: t.arg.id(), id: t.arg.id({ required: true }) },
      validate: lookupInput,
      resolve: (_root, args, ctx) => {
        authorize(ctx.principal, { kind: 'session', workspaceId: workspaceOf(args), sessionId: args.id });
        return ctx.deriver.getSession(args);
      },
    }),
    peer: t.field({
      type: PeerType,
      nullable: true,
      args: { workspaceId: t.arg.id(), id: t.arg.id({ required: true }) },
      validate: lookupInput,
      resolve: (_root, args, ctx) => {
        authorize(ctx.principal, { kind: 'peer', workspaceId: workspaceOf(args), peerId: args.id });
        return ctx.deriver.getPeer(args);
      },
    }),
  }),
});

builder.mutationType({
  fields: (t) => ({
    upsertWorkspace: t.field({
      type: WorkspaceType,
      description:
        'Gets or creates a workspace, or changes its derivation settings, metadata or configuration. Any key of the workspace may get or create it (as Honcho allows); changing it needs an admin or workspace key.',
      args: {
        id: t.arg.id({ required: true }),
        settings: t.arg({ type: DerivationSettingsInput }),
        ...attributeArgs(t.arg),
      },
      validate: upsertWorkspaceInput,
      resolve: (_root, args, ctx) => {
        const changes = args.settings != null || args.metadata != null || args.configuration != null;
        authorize(ctx.principal, { kind: changes ? 'workspace' : 'member', workspaceId: args.id });
        return ctx.deriver.upsertWorkspace(args);
      },
    }),
    upsertPeer: t.field({
      type: PeerType,
      description: 'Creates a peer (and its workspace) or updates observeMe, metadata or configuration.',
      args: {
        workspaceId: t.arg.id(),
        id: t.arg.id({ required: true }),
        observeMe: t.arg.boolean(),
        ...attributeArgs(t.arg),
      },
      validate: upsertPeerInput,
      resolve: (_root, args, ctx) => {
        authorize(ctx.principal, { kind: 'peer', workspaceId: workspaceOf(args), peerId: args.id });
        return ctx.deriver.upsertPeer(args);
      },
    }),
    upsertSession: t.field({
      type: SessionType,
      description:
        'Creates a session or updates it. Listed peers join (created when missing) or have their config updated; at most 10 may observe others.',
      args: {
        workspaceId: t.arg.id(),
        id: t.arg.id({ required: true }),
        peers: t.arg({ type: [SessionPeerInput] }),
        settings: t.arg({ type: DerivationSettingsInput }),
        ...attributeArgs(t.arg),
      },
      validate: upsertSessionInput,
      resolve: (_root, args, ctx) => {
        authorize(ctx.principal, { kind: 'session', workspaceId: workspaceOf(args), sessionId: args.id });
        return ctx.deriver.upsertSession(args);
      },
    }),
    removeSessionPeers: t.field({
      type: SessionType,
      description: 'Peers leave a session; the tasks already created stay.',
      args: {
        workspaceId: t.arg.id(),
        sessionId: t.arg.id({ required: true }),
        peerIds: t.arg.idList({ required: true }),
      },
      validate: removeSessionPeersInput,
      resolve: (_root, args, ctx) => {
        authorize(ctx.principal, {
          kind: 'session',
          workspaceId: workspaceOf(args),
          sessionId: args.sessionId,
        });
        return ctx.deriver.removeSessionPeers(args);
      },
    }),
    addMessages: t.field({
      type: AddMessagesPayloadType,
      description:
        'Stores 1 to 100 messages and the tasks they create, in one transaction. Senders not in the session join it.',
      args: {
        workspaceId: t.arg.id(),
        sessionId: t.arg.id({ required: true }),
        messages: t.arg({ type: [MessageInput], required: true }),
        notifyWhenDerived: t.arg.boolean({
          description:
            "Watch this call: once every task these messages created has finished (succeeded, failed for good or cancelled), a `messages.derived` webhook event goes to the workspace's endpoints that receive it. Durable: written in the transaction that finishes the last task.",
        }),
        createSession: t.arg.boolean({
          description:
            'Create the session (its senders as members) when it does not exist, as Honcho does, if the key may create it (admin, workspace, or the key of that session). Default false: an unknown session is NOT_FOUND.',
        }),
      },
      validate: addMessagesInput,
      resolve: (_root, args, ctx) => {
        const workspaceId = workspaceOf(args);
        authorize(ctx.principal, {
          kind: 'messages',
          workspaceId,
          sessionId: args.sessionId,
          senderIds: args.messages.map((m) => m.peerId),
        });
        // A key that may not create the session sends as without createSession (an unknown one is NOT_FOUND).
        const createSession =
          args.createSession === true &&
          reaches(ctx.principal, { kind: 'session', workspaceId, sessionId: args.sessionId });
        return ctx.deriver.addMessages({ ...args, createSession });
      },
    }),
    createKey: t.field({
      type: CreatedKeyType,
      description:
        'Mints a key (a JWT) for one scope: admin, a workspace, a session of it or a peer of it. Admin keys mint any key; workspace keys mint keys inside their workspace. Needs authentication on (AUTH_JWT_SECRET).',
      args: t.validate(
        {
          admin: t.arg.boolean({ description: 'An admin key (reaches everything); names no ids.' }),
          workspaceId: t.arg.id(),
          sessionId: t.arg.id({ description: 'A session key of workspaceId.' }),
          peerId: t.arg.id({ description: 'A peer key of workspaceId.' }),
          expiresInSeconds: t.arg.int({ description: 'Lifetime; omitted: the key does not expire.' }),
        },
        createKeyInput,
      ),
      resolve: async (_root, args, ctx) => {
        if (!ctx.keys) {
          throw new AuthDisabledError(
            'authentication is off (AUTH_JWT_SECRET is unset): there are no keys to mint',
          );
        }
        authorize(ctx.principal, { kind: 'mint', scope: args.scope });
        const expiresAt = args.expiresInSeconds == null ? null : Date.now() + args.expiresInSeconds * 1000;
        return { key: await ctx.keys.mint(args.scope, expiresAt), scope: args.scope, expiresAt };
      },
    }),
  }),
});

const subscriptionArgs = statusFilterInput.extend({
  untilIdle: z.boolean({ error: 'must be true or false' }).nullish(),
  coalesceMs: z
    .number({ error: 'must be a number' })
    .int({ error: 'must be a whole number' })
    .min(0, { error: 'must be 0 or more' })
    .max(limits.coalesceMaxMs, { error: `must be at most ${limits.coalesceMaxMs}` })
    .nullish(),
});

builder.subscriptionType({
  fields: (t) => ({
    deriverStatus: t.field({
      type: DeriverStatusType,
      description:
        'The current status at once, then a new one whenever it changes (at most one per coalescing window, never two equal in a row, the last state always delivered). With untilIdle the subscription completes once nothing is pending or running, and a session or peer that does not exist is an error (NOT_FOUND, naming the argument) rather than an idle status.',
      args: t.validate(
        {
          workspaceId: t.arg.id(),
          observerId: t.arg.id(),
          senderId: t.arg.id(),
          sessionId: t.arg.id(),
          untilIdle: t.arg.boolean({ defaultValue: false }),
          coalesceMs: t.arg.int({
            description: `Coalescing window for this subscription, 0 (every change) to ${limits.coalesceMaxMs} ms. Default: the server setting.`,
          }),
        },
        subscriptionArgs,
      ),
      subscribe: async (_root, args, ctx, info) => {
        const filter = toQuery(args);
        authorize(ctx.principal, { kind: 'status', ...filter });
        if (args.untilIdle === true) await ctx.deriver.assertFilterNamesKnown(filter);
        const views = await ctx.live.subscribe(filter, {
          untilIdle: args.untilIdle === true,
          windowMs: args.coalesceMs ?? undefined,
          withSessions: selectsField(info, 'sessions'),
          withProgress:
            selectsField(info, 'throughputPerSecond') || selectsField(info, 'estimatedSecondsToIdle'),
        });
        // A key's subscription ends with an UNAUTHENTICATED event when the key expires.
        const expiresAt = ctx.principal.kind === 'key' ? ctx.principal.expiresAt : null;
        return untilExpiry(views, expiresAt) as AsyncIterable<StatusView>;
      },
      resolve: (view) => {
        if ((view as unknown) === KEY_EXPIRED) throw new UnauthenticatedError('the key has expired');
        return view;
      },
    }),
  }),
});
