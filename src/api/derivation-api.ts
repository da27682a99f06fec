/**
 * Your messages, derived (docs/api.md): `Message.derivation`, the `messageDerivation` query and
 * subscription, and the session watermark `DeriverStatus.derivedThroughSeq`.
 */
import type { ArgBuilder } from '@pothos/core';
import DataLoader from 'dataloader';
import { sessionsReached } from '../auth/authorize.ts';
import { messageDerivationInput } from '../domain/inputs.ts';
import type { Message } from '../domain/model.ts';
import { NotFoundError } from '../errors.ts';
import type {
  DerivationCounts,
  DerivationRequest,
  DerivationState,
  MessageDerivation,
  MessageDerivationKey,
} from '../service/derivation.ts';
import type { MessageTasksRequest } from '../store/store.ts';
import { builder, type Types } from './builder.ts';
import type { ApiContext } from './context.ts';
import { workspaceOf } from './filter-args.ts';
import { TaskTypeEnum } from './queue-api.ts';
import { DeriverStatusType, MessageType } from './types.ts';

const COUNTS: Record<Exclude<keyof DerivationCounts, 'done'>, string> = {
  pending: 'Not started, or waiting for a retry.',
  inProgress: 'Running now.',
  completed: 'Finished: succeeded, or failed for good.',
  failed: 'The part of completed that failed for good.',
  retrying: 'The part of pending that failed before and waits for a retry.',
  total: 'Tasks the message(s) created that the filter covers.',
};

function derivationFields<T extends DerivationCounts>(t: PothosSchemaTypes.ObjectFieldBuilder<Types, T>) {
  return {
    ...Object.fromEntries(
      (Object.keys(COUNTS) as (keyof typeof COUNTS)[]).map((name) => [
        name,
        t.int({ description: COUNTS[name], resolve: (parent) => parent[name] }),
      ]),
    ),
    done: t.boolean({
      description: 'Nothing pending or running: every task is finished.',
      resolve: (parent) => parent.done,
    }),
  };
}

const MessageDerivationType = builder.objectRef<MessageDerivation>('MessageDerivation').implement({
  description: 'What the tasks one message created are doing.',
  fields: (t) => ({
    messageId: t.exposeID('messageId'),
    sessionId: t.exposeID('sessionId'),
    seq: t.exposeInt('seq'),
    ...derivationFields(t),
  }),
});

const DerivationStateType = builder.objectRef<DerivationState>('MessagesDerivation').implement({
  description: 'What the tasks a set of messages created are doing: in total, and per message.',
  fields: (t) => ({
    ...derivationFields(t),
    messages: t.field({ type: [MessageDerivationType], resolve: (s) => [...s.messages] }),
  }),
});

/** The request, once the arguments alone show the caller may ask (sessions it does not reach: not found). */
function reachable(ctx: ApiContext, request: MessageTasksRequest): DerivationRequest {
  return { ...request, reaches: sessionsReached(ctx.principal, request.workspaceId, request.observerId) };
}

const requestOf = (args: {
  workspaceId?: string | null;
  messageIds: readonly string[];
  observerId?: string | null;
  taskTypes?: readonly ('representation' | 'summary')[] | null;
}): MessageTasksRequest => ({
  workspaceId: workspaceOf(args),
  messageIds: args.messageIds,
  observerId: args.observerId ?? undefined,
  taskTypes: args.taskTypes ?? undefined,
});

/** The arguments of the messageDerivation query and subscription. */
const derivationArgs = (arg: ArgBuilder<Types>) => ({
  workspaceId: arg.id(),
  messageIds: arg.idList({
    required: true,
    description: 'The messages, as addMessages returns them (1 to 1000).',
  }),
  observerId: arg.id({ description: "Only this observer's tasks (summaries have no observer)." }),
  taskTypes: arg({ type: [TaskTypeEnum], description: 'Only these task types. Default: every type.' }),
});

/**
 * Batches `Message.derivation`: the fields of one list of messages resolve in the same tick, and
 * one read per filter answers them all (each message authorized on its own, so a message the key
 * may not see fails alone). No cache: a WebSocket's operations share one context.
 */
export function createDerivationLoader(
  derivation: ApiContext['derivation'],
  principal: ApiContext['principal'],
): DataLoader<MessageDerivationKey, MessageDerivation> {
  return new DataLoader(
    async (keys) => {
      const groups = new Map<string, MessageDerivationKey[]>();
      for (const key of keys) {
        const filter = JSON.stringify([key.workspaceId, key.observerId, key.taskTypes]);
        groups.set(filter, [...(groups.get(filter) ?? []), key]);
      }
      const answers = new Map<MessageDerivationKey, MessageDerivation | Error>();
      for (const group of groups.values()) {
        const { workspaceId, observerId, taskTypes } = group[0]!;
        const request = { workspaceId, observerId, taskTypes, messageIds: group.map((k) => k.messageId) };
        const byId = new Map<string, MessageDerivation | Error>();
        try {
          const reaches = sessionsReached(principal, workspaceId, observerId);
          for (const message of (await derivation.read(request)).messages) {
            byId.set(
              message.messageId,
              reaches(message.sessionId)
                ? message
                : new NotFoundError('message', message.messageId, 'messageIds'),
            );
          }
        } catch (error) {
          for (const key of group) byId.set(key.messageId, error as Error);
        }
        for (const key of group) {
          answers.set(
            key,
            byId.get(key.messageId) ??
              new Error(`message ${key.messageId} vanished while reading its derivation`),
          );
        }
      }
      return keys.map((key) => answers.get(key)!);
    },
    { cache: false },
  );
}

builder.objectField(MessageType, 'derivation', (t) =>
  t.field({
    type: MessageDerivationType,
    description: "What the tasks this message created are doing (for one observer's units, or all).",
    args: { observerId: t.arg.id(), taskTypes: t.arg({ type: [TaskTypeEnum] }) },
    resolve: (message: Message, args, ctx) =>
      ctx.messageDerivations.load({
        workspaceId: message.workspaceId,
        messageId: message.id,
        observerId: args.observerId ?? undefined,
        taskTypes: args.taskTypes ?? undefined,
      }),
  }),
);

builder.queryField('messageDerivation', (t) =>
  t.field({
    type: DerivationStateType,
    description:
      'What the tasks these messages created are doing, now. Costs the tasks of those messages only, however busy the queue is. An unknown message id is NOT_FOUND naming messageIds.',
    args: derivationArgs(t.arg),
    validate: messageDerivationInput,
    resolve: (_root, args, ctx) => ctx.derivation.read(reachable(ctx, requestOf(args))),
  }),
);

builder.subscriptionField('messageDerivation', (t) =>
  t.field({
    type: DerivationStateType,
    description:
      "The state of these messages' tasks at once, then every change; completes once every task is finished (done), however busy the rest of the queue is. An unknown message id is NOT_FOUND naming messageIds.",
    args: derivationArgs(t.arg),
    validate: messageDerivationInput,
    subscribe: (_root, args, ctx) => ctx.derivation.watch(reachable(ctx, requestOf(args))),
    resolve: (state) => state,
  }),
);

builder.objectField(DeriverStatusType, 'derivedThroughSeq', (t) =>
  t.int({
    nullable: true,
    description:
      "The session's watermark: every task of the units this filter matches is finished for its messages up to this seq. Null unless the filter names a session.",
    resolve: (view, _args, ctx) => {
      const { sessionId } = view.filter;
      return sessionId === undefined ? null : ctx.queue.derivedThroughSeq({ ...view.filter, sessionId });
    },
  }),
);
