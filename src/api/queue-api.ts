/**
 * Inside the queue (docs/api.md) in GraphQL: `workUnits` and `failedTasks` (cursor paging by a
 * stable id), and the admin mutations `retryFailedTasks` and `cancelPendingTasks`. Reads need the
 * same key as the status of that filter; the mutations an admin key or a key of the workspace.
 */

import type { ArgBuilder } from '@pothos/core';
import { z } from 'zod';
import { authorize } from '../auth/authorize.ts';
import { PAGE_SIZE, pageSizeSchema, retryFailedTasksInput, unitFilterInput } from '../domain/inputs.ts';
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import {
  type PageOf,
  WORK_UNIT_COUNT_LIMIT,
  WORKSPACE_LIST_LIMIT,
  type WorkUnitView,
} from '../service/queue.ts';
import type { WaitingFor } from '../service/waiting-for.ts';
import type { FailedTask, WorkUnitInfo } from '../store/store.ts';
import { builder, type Types } from './builder.ts';
import { toUnitFilter, workspaceOf } from './filter-args.ts';
import { DeriverStatusType } from './types.ts';

/** Epoch ms as ISO 8601 (`null` stays `null`). */
export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export const TaskTypeEnum = builder.enumType('TaskType', {
  description: 'The kind of a task: a representation (observer learns about sender) or a session summary.',
  values: Object.fromEntries(TASK_TYPES.map((type) => [type, { value: type }])) as Record<
    TaskType,
    { value: TaskType }
  >,
});

// Cursors: opaque to clients, a list's name and the id of the last row seen.
const encodeCursor = (list: string, id: number): string => Buffer.from(`${list}:${id}`).toString('base64url');
const cursorSchema = (list: string) =>
  z
    .string()
    .nullish()
    .transform((cursor, ctx) => {
      if (cursor == null) return null;
      const match = new RegExp(`^${list}:(\\d{1,15})$`).exec(Buffer.from(cursor, 'base64url').toString());
      if (!match?.[1]) {
        ctx.addIssue({
          code: 'custom',
          message: `is not a cursor of ${list} (use a pageInfo.endCursor it returned)`,
        });
        return z.NEVER;
      }
      return Number(match[1]);
    });

interface PageInfoShape {
  readonly endCursor: string | null;
  readonly hasNextPage: boolean;
}

const PageInfoType = builder.objectRef<PageInfoShape>('PageInfo').implement({
  fields: (t) => ({
    endCursor: t.string({
      nullable: true,
      description: 'Pass as `after` for the next page; null on an empty page.',
      resolve: (p) => p.endCursor,
    }),
    hasNextPage: t.exposeBoolean('hasNextPage'),
  }),
});

const pageInfoOf = <T extends { id: number }>(list: string, page: PageOf<T>): PageInfoShape => {
  const last = page.items.at(-1);
  return { endCursor: last ? encodeCursor(list, last.id) : null, hasNextPage: page.hasNextPage };
};

const RunningTaskType = builder.objectRef<NonNullable<WorkUnitInfo['running']>>('RunningTask').implement({
  fields: (t) => ({
    taskId: t.id({ resolve: (r) => String(r.taskId) }),
    attempt: t.exposeInt('attempt', { description: '1 for the first attempt.' }),
    startedAt: t.string({ description: 'ISO 8601.', resolve: (r) => iso(r.startedAt) ?? '' }),
  }),
});

const unitKeyFields = <T extends { key: WorkUnitInfo['key'] }>(
  t: PothosSchemaTypes.ObjectFieldBuilder<Types, T>,
) => ({
  taskType: t.field({ type: TaskTypeEnum, resolve: (u) => u.key.taskType }),
  workspaceId: t.id({ resolve: (u) => u.key.workspaceId }),
  sessionId: t.id({ resolve: (u) => u.key.sessionId }),
  observerId: t.id({ nullable: true, description: 'null for a summary.', resolve: (u) => u.key.observerId }),
  senderId: t.id({ nullable: true, description: 'null for a summary.', resolve: (u) => u.key.senderId }),
});

const WaitReasonEnum = builder.enumType('WaitReason', {
  description: 'Why a work unit with pending tasks is not running them.',
  values: {
    BEHIND_RUNNING_TASK: {
      description: 'Its next task waits for the one running now (one at a time, in order).',
    },
    CLAIMED: { description: 'A worker holds it and is about to start its next task.' },
    BACKING_OFF: { description: 'Its next task failed and waits for its retry, until `until`.' },
    RATE_LIMITED: {
      description: "Its task type is rate limited (a limit, or a provider's 429), until `until`.",
    },
    BATCH_FILLING: {
      description:
        'Its batch is filling (tokens of targetTokens, tasks of targetTasks); it goes at `until` anyway.',
    },
    NO_FREE_WORKER: {
      description: 'It is ready; every worker (or every slot its task type may use) is busy.',
    },
  } as const,
});

const WaitingForType = builder.objectRef<WaitingFor>('WaitingFor').implement({
  description: 'Why a work unit waits, with its figures.',
  fields: (t) => ({
    reason: t.field({ type: WaitReasonEnum, resolve: (w) => w.reason }),
    until: t.string({
      nullable: true,
      description:
        'When the wait ends (ISO 8601): a retry, the end of a rate limit, or when a filling batch goes anyway.',
      resolve: (w) => iso(w.until),
    }),
    tokens: t.int({
      nullable: true,
      description: 'BATCH_FILLING: estimated tokens pending.',
      resolve: (w) => w.tokens,
    }),
    targetTokens: t.int({
      nullable: true,
      description: 'BATCH_FILLING: tokens that fill a batch.',
      resolve: (w) => w.targetTokens,
    }),
    tasks: t.int({ nullable: true, description: 'BATCH_FILLING: tasks pending.', resolve: (w) => w.tasks }),
    targetTasks: t.int({
      nullable: true,
      description: 'BATCH_FILLING: tasks that fill a batch.',
      resolve: (w) => w.targetTasks,
    }),
  }),
});

const WorkUnitType = builder.objectRef<WorkUnitView>('WorkUnit').implement({
  description:
    'A work unit: the tasks of one (taskType, session, observer, sender) key, which run one at a time in order.',
  fields: (t) => ({
    id: t.id({ resolve: (u) => String(u.id) }),
    ...unitKeyFields(t),
    pendingTasks: t.int({
      description: 'Not started, or waiting for a retry.',
      resolve: (u) => u.counters.pending,
    }),
    retryingTasks: t.int({
      description: 'The part of pendingTasks that failed before and waits to run again.',
      resolve: (u) => u.counters.retrying,
    }),
    runningTasks: t.int({ resolve: (u) => u.counters.running }),
    completedTasks: t.int({ resolve: (u) => u.counters.completed }),
    failedTasks: t.int({ resolve: (u) => u.counters.failed }),
    oldestPendingSince: t.string({
      nullable: true,
      description: 'When its oldest pending task was created (ISO 8601); null when none is pending.',
      resolve: (u) => iso(u.oldestPendingAt),
    }),
    oldestPendingAgeSeconds: t.float({
      nullable: true,
      description: 'Age of its oldest pending task, in seconds.',
      resolve: (u) =>
        u.oldestPendingAt === null ? null : Math.max(0, (Date.now() - u.oldestPendingAt) / 1000),
    }),
    running: t.field({
      type: RunningTaskType,
      nullable: true,
      description: 'The task running now (as the store last recorded it).',
      resolve: (u) => u.running,
    }),
    retryAt: t.string({
      nullable: true,
      description: 'When a unit waiting for a retry runs again (ISO 8601).',
      resolve: (u) => iso(u.retryAt),
    }),
    lastError: t.string({
      nullable: true,
      description: 'The error of its newest task that has one (a failure for good, or a failed attempt).',
      resolve: (u) => u.lastError,
    }),
    derivedThroughSeq: t.int({
      nullable: true,
      description:
        "Its watermark: every task of it is finished for the session's messages up to this seq (the message count when nothing of it is left).",
      resolve: (u) => u.derivedThroughSeq,
    }),
    stuck: t.boolean({
      description:
        "Its running task has run longer than its task type's STUCK_AFTER (false when none is set).",
      resolve: (u) => u.stuck,
    }),
    waitingFor: t.field({
      type: WaitingForType,
      nullable: true,
      description: 'Why its pending tasks are not running now; null when none is pending.',
      resolve: (u) => u.waitingFor,
    }),
  }),
});

const FailedTaskType = builder.objectRef<FailedTask>('FailedTask').implement({
  description: 'A task that failed for good (or was cancelled); retryFailedTasks puts it back in line.',
  fields: (t) => ({
    id: t.id({ resolve: (f) => String(f.id) }),
    ...unitKeyFields(t),
    messageId: t.id({ nullable: true, resolve: (f) => f.messageId }),
    seq: t.int({
      description: 'Its message (a summary: the last message it covers).',
      resolve: (f) => f.payload.seq,
    }),
    error: t.exposeString('error'),
    attempts: t.exposeInt('attempts', { description: 'Times it was started (0: cancelled before it ran).' }),
    createdAt: t.string({ resolve: (f) => iso(f.createdAt) ?? '' }),
    failedAt: t.string({ resolve: (f) => iso(f.failedAt) ?? '' }),
  }),
});

interface WorkUnitPage {
  readonly page: PageOf<WorkUnitView>;
  /** Counts the units of every page (read once, when a count field is selected). */
  readonly count: () => Promise<{ readonly count: number; readonly exact: boolean }>;
}

const WorkUnitConnection = builder.objectRef<WorkUnitPage>('WorkUnitConnection').implement({
  fields: (t) => ({
    nodes: t.field({ type: [WorkUnitType], resolve: (c) => [...c.page.items] }),
    pageInfo: t.field({ type: PageInfoType, resolve: (c) => pageInfoOf('workUnits', c.page) }),
    totalCount: t.int({
      description: `Units matching, on every page, counted up to ${WORK_UNIT_COUNT_LIMIT.toLocaleString('en')} (totalCountIsExact is false when there are more).`,
      resolve: async (c) => (await c.count()).count,
    }),
    totalCountIsExact: t.boolean({
      description: `False when more than ${WORK_UNIT_COUNT_LIMIT.toLocaleString('en')} units match: the count stopped there.`,
      resolve: async (c) => (await c.count()).exact,
    }),
  }),
});

const FailedTaskConnection = builder
  .objectRef<{ page: PageOf<FailedTask> }>('FailedTaskConnection')
  .implement({
    fields: (t) => ({
      nodes: t.field({ type: [FailedTaskType], resolve: (c) => [...c.page.items] }),
      pageInfo: t.field({ type: PageInfoType, resolve: (c) => pageInfoOf('failedTasks', c.page) }),
    }),
  });

const CancelPayload = builder
  .objectRef<{ cancelled: number; leftWithWorkers: number }>('CancelPendingTasksPayload')
  .implement({
    fields: (t) => ({
      cancelledTasks: t.exposeInt('cancelled', {
        description:
          'Pending tasks now failed with "cancelled before it ran"; retryFailedTasks brings them back.',
      }),
      leftWithWorkers: t.exposeInt('leftWithWorkers', {
        description: 'Pending tasks a worker had already taken with its unit: they run.',
      }),
    }),
  });

const RetryPayload = builder.objectRef<{ retried: number }>('RetryFailedTasksPayload').implement({
  fields: (t) => ({
    retriedTasks: t.exposeInt('retried', {
      description: 'Failed tasks put back in line (at the end of their unit).',
    }),
  }),
});

/** The arguments every queue field takes: a status filter and a task type. */
const filterArgs = (arg: ArgBuilder<Types>) => ({
  workspaceId: arg.id({ description: 'Omitted means "default".' }),
  sessionId: arg.id(),
  observerId: arg.id(),
  senderId: arg.id(),
  taskType: arg({ type: TaskTypeEnum }),
});

const pageArgs = (arg: ArgBuilder<Types>) => ({
  first: arg.int({ description: `Rows per page, 1 to ${PAGE_SIZE.max}. Default ${PAGE_SIZE.default}.` }),
  after: arg.string({ description: 'pageInfo.endCursor of the previous page.' }),
});

builder.queryFields((t) => ({
  workspaces: t.idList({
    description: `Workspaces that have work (finished work too), by id, at most ${WORKSPACE_LIST_LIMIT}. A key of one workspace (or of a session or peer in it) sees only its own.`,
    resolve: async (_root, _args, ctx) => {
      const { principal } = ctx;
      if (principal.kind === 'key' && principal.scope.kind !== 'admin') return [principal.scope.workspaceId];
      return ctx.queue.workspaces();
    },
  }),
  workUnits: t.field({
    type: WorkUnitConnection,
    description:
      'Work units matching the filter (all optional, AND), by id: their counts, oldest pending task, running task and last error. Paging is stable while the queue changes.',
    args: t.validate(
      {
        ...filterArgs(t.arg),
        includeIdle: t.arg.boolean({
          description: 'Also units with nothing pending or running. Default false.',
        }),
        ...pageArgs(t.arg),
      },
      unitFilterInput.extend({
        includeIdle: z.boolean({ error: 'must be true or false' }).nullish(),
        first: pageSizeSchema,
        after: cursorSchema('workUnits'),
      }),
    ),
    resolve: async (_root, { includeIdle, first, after, ...args }, ctx) => {
      const filter = toUnitFilter(args);
      authorize(ctx.principal, { kind: 'status', ...filter });
      const idle = includeIdle === true;
      const page = await ctx.queue.workUnits(filter, {
        afterId: after ?? null,
        limit: first ?? PAGE_SIZE.default,
        includeIdle: idle,
      });
      let counted: ReturnType<WorkUnitPage['count']> | undefined;
      return { page, count: () => (counted ??= ctx.queue.countWorkUnits(filter, { includeIdle: idle })) };
    },
  }),
  failedTasks: t.field({
    type: FailedTaskConnection,
    description: 'Tasks that failed for good (cancelled ones too), with their error, by id.',
    args: t.validate(
      { ...filterArgs(t.arg), ...pageArgs(t.arg) },
      unitFilterInput.extend({ first: pageSizeSchema, after: cursorSchema('failedTasks') }),
    ),
    resolve: async (_root, { first, after, ...args }, ctx) => {
      const filter = toUnitFilter(args);
      authorize(ctx.principal, { kind: 'status', ...filter });
      return {
        page: await ctx.queue.failedTasks(filter, {
          afterId: after ?? null,
          limit: first ?? PAGE_SIZE.default,
        }),
      };
    },
  }),
}));

builder.mutationFields((t) => ({
  retryFailedTasks: t.field({
    type: RetryPayload,
    description:
      'Puts the failed tasks of matching units (only taskIds when given) back in line, at the end of their unit, with a fresh attempt budget. Counts move from failed to pending at once and subscribers are told. Needs an admin key or a key of the workspace.',
    args: t.validate(
      {
        ...filterArgs(t.arg),
        taskIds: t.arg.idList({ description: 'Only these tasks (ids from failedTasks).' }),
      },
      retryFailedTasksInput,
    ),
    resolve: async (_root, args, ctx) => {
      authorize(ctx.principal, { kind: 'queue', workspaceId: workspaceOf(args) });
      return { retried: await ctx.queue.retryFailedTasks(toUnitFilter(args), args.taskIds ?? undefined) };
    },
  }),
  cancelPendingTasks: t.field({
    type: CancelPayload,
    description:
      'Cancels the pending tasks of matching units: they fail with "cancelled before it ran" (retryFailedTasks brings them back). Running tasks, and the ones a worker already took with its unit, go on. Needs an admin key or a key of the workspace.',
    args: t.validate(filterArgs(t.arg), unitFilterInput),
    resolve: async (_root, args, ctx) => {
      authorize(ctx.principal, { kind: 'queue', workspaceId: workspaceOf(args) });
      return ctx.queue.cancelPendingTasks(toUnitFilter(args));
    },
  }),
}));

builder.objectField(DeriverStatusType, 'stuckTasks', (t) =>
  t.int({
    description:
      "Running tasks of the filter's units that have run longer than their task type's STUCK_AFTER (0 when none is set), on every instance.",
    resolve: (view, _args, ctx) => ctx.queue.stuckTasks(view.filter),
  }),
);
