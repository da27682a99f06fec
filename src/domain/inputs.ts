/**
 * Input schemas of every write and of the status filter. They are the single source of the rules
 * in docs/api.md; the GraphQL layer validates its arguments with these same schemas.
 */
import { z } from 'zod';
import { type InputIssue, InvalidInputError } from '../errors.ts';
import { contentSchema, idSchema } from './ids.ts';
import { DEFAULT_WORKSPACE_ID, limits } from './limits.ts';
import { settingsOverrideSchema } from './settings.ts';
import { TASK_TYPES, type TaskType } from './work-unit-key.ts';

/** Absent or `null` means the default workspace. */
const workspaceIdSchema = idSchema.nullish().transform((id) => id ?? DEFAULT_WORKSPACE_ID);
/** An optional id where `null` means the same as absent (GraphQL clients send either). */
const optionalId = idSchema.nullish().transform((id) => id ?? undefined);
const optionalBoolean = z
  .boolean({ error: 'must be true or false' })
  .nullish()
  .transform((value) => value ?? undefined);

/** Honcho's `metadata` or `configuration`: a JSON object of bounded size; absent or null keeps the stored one. */
const attributeSchema = z
  .record(z.string(), z.unknown(), { error: 'must be a JSON object' })
  .refine((value) => Buffer.byteLength(JSON.stringify(value)) <= limits.attributesMaxBytes, {
    error: `must be at most ${limits.attributesMaxBytes} bytes as JSON`,
  })
  .nullish()
  .transform((value) => value ?? undefined);

export const upsertWorkspaceInput = z.strictObject({
  id: idSchema,
  settings: settingsOverrideSchema.nullish().transform((settings) => settings ?? undefined),
  metadata: attributeSchema,
  configuration: attributeSchema,
});

export const upsertPeerInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  id: idSchema,
  observeMe: optionalBoolean,
  metadata: attributeSchema,
  configuration: attributeSchema,
});

export const sessionPeerInput = z.strictObject({
  peerId: idSchema,
  /** `null` inherits the peer's own value; absent keeps the current one. */
  observeMe: z.boolean({ error: 'must be true or false' }).nullish(),
  observeOthers: optionalBoolean,
});

function uniquePeerIds<T>(pick: (item: T) => string) {
  return (items: T[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const id = pick(item);
      if (seen.has(id)) {
        ctx.addIssue({ code: 'custom', path: [index], message: `peer "${id}" is listed more than once` });
      }
      seen.add(id);
    });
  };
}

export const upsertSessionInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  id: idSchema,
  peers: z
    .array(sessionPeerInput)
    .superRefine(uniquePeerIds((p: z.infer<typeof sessionPeerInput>) => p.peerId))
    .nullish()
    .transform((peers) => peers ?? undefined),
  settings: settingsOverrideSchema.nullish().transform((settings) => settings ?? undefined),
  metadata: attributeSchema,
  configuration: attributeSchema,
});

export const removeSessionPeersInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  sessionId: idSchema,
  peerIds: z.array(idSchema).min(1, { error: 'must name at least one peer' }),
});

export const messageInput = z.strictObject({
  peerId: idSchema,
  content: contentSchema,
  metadata: attributeSchema,
});

export const addMessagesInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  sessionId: idSchema,
  messages: z
    .array(messageInput)
    .min(limits.messagesPerCallMin, { error: `must hold at least ${limits.messagesPerCallMin} message` })
    .max(limits.messagesPerCallMax, {
      error: `must hold at most ${limits.messagesPerCallMax} messages per call`,
    }),
  notifyWhenDerived: z.boolean().nullish(),
  createSession: z.boolean().nullish(),
});

export const statusFilterInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  observerId: optionalId,
  senderId: optionalId,
  sessionId: optionalId,
});

export const lookupInput = z.strictObject({ workspaceId: workspaceIdSchema, id: idSchema });

/** Which work units an inspection or admin call reaches: a status filter and a task type. */
export const unitFilterInput = statusFilterInput.extend({
  taskType: z
    .enum(TASK_TYPES as [TaskType, ...TaskType[]], { error: `must be one of ${TASK_TYPES.join(', ')}` })
    .nullish()
    .transform((type) => type ?? undefined),
});

/** Which tasks of which messages a derivation read covers (docs/api.md, "Your messages, derived"). */
export const messageDerivationInput = z.strictObject({
  workspaceId: workspaceIdSchema,
  messageIds: z
    .array(z.string().regex(/^\d{1,15}$/, { error: 'must be a message id (as addMessages returns it)' }), {
      error: 'must be a list of message ids',
    })
    .min(1, { error: 'must name at least one message' })
    .max(1000, { error: 'at most 1000 messages at once' }),
  observerId: optionalId,
  taskTypes: z
    .array(
      z.enum(TASK_TYPES as [TaskType, ...TaskType[]], { error: `must be one of ${TASK_TYPES.join(', ')}` }),
    )
    .min(1, { error: 'must name at least one task type (or leave it out for all)' })
    .nullish()
    .transform((types) => types ?? undefined),
});

/** Rows per page of an inspection list. */
export const PAGE_SIZE = { default: 20, max: 100 } as const;

export const pageSizeSchema = z
  .number({ error: 'must be a number' })
  .int({ error: 'must be a whole number' })
  .min(1, { error: 'must be at least 1' })
  .max(PAGE_SIZE.max, { error: `must be at most ${PAGE_SIZE.max}` })
  .nullish()
  .transform((n) => n ?? PAGE_SIZE.default);

/** A task id as the API shows it (digits). */
export const taskIdSchema = z
  .string()
  .regex(/^[1-9]\d{0,14}$/, { error: 'must be a task id (digits, as failedTasks lists them)' })
  .transform(Number);

export const retryFailedTasksInput = unitFilterInput.extend({
  taskIds: z
    .array(taskIdSchema)
    .min(1, { error: 'must name at least one task (or leave it out to retry every failed task)' })
    .max(1_000, { error: 'must name at most 1000 tasks' })
    .nullish()
    .transform((ids) => ids ?? undefined),
});

export type UpsertWorkspaceInput = z.input<typeof upsertWorkspaceInput>;
export type UpsertPeerInput = z.input<typeof upsertPeerInput>;
export type UpsertSessionInput = z.input<typeof upsertSessionInput>;
export type RemoveSessionPeersInput = z.input<typeof removeSessionPeersInput>;
export type AddMessagesInput = z.input<typeof addMessagesInput>;
export type StatusFilterInput = z.input<typeof statusFilterInput>;
export type LookupInput = z.input<typeof lookupInput>;
/** A status filter after validation: the workspace is always known. */
export type StatusFilter = z.output<typeof statusFilterInput>;

/** Turns zod issues into `InputIssue`s with the argument path and a sentence a person understands. */
export function toInputIssues(error: z.ZodError): InputIssue[] {
  return error.issues.map((issue) => ({
    path: issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    message:
      issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message,
  }));
}

/** Validates `value`; throws `InvalidInputError` (nothing written yet) when it does not fit. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new InvalidInputError(toInputIssues(result.error));
  return result.data;
}
