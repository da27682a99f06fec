/**
 * `deriverStatusHistory`: a workspace's recent backlog and throughput, as this instance sampled
 * them (`status/status-history.ts`): the dashboard's chart opens with it. Needs the same key as
 * the workspace's status.
 */
import { authorize } from '../auth/authorize.ts';
import { statusFilterInput } from '../domain/inputs.ts';
import type { StatusSample } from '../status/status-history.ts';
import { builder } from './builder.ts';

interface HistoryView {
  readonly samples: readonly StatusSample[];
  readonly sampleMs: number;
  readonly windowMs: number;
  /** When it was read (epoch ms): `secondsAgo` is counted from here. */
  readonly now: number;
}

const SampleType = builder.objectRef<{ sample: StatusSample; now: number }>('DeriverStatusSample').implement({
  description: "One sample of a workspace's status.",
  fields: (t) => ({
    at: t.string({
      description: 'When it was taken (ISO 8601).',
      resolve: (s) => new Date(s.sample.at).toISOString(),
    }),
    secondsAgo: t.float({
      description:
        "How long before this answer it was taken (by the server's clock, so a client's clock does not matter).",
      resolve: (s) => (s.now - s.sample.at) / 1000,
    }),
    pendingWorkUnits: t.int({ resolve: (s) => s.sample.pendingWorkUnits }),
    inProgressWorkUnits: t.int({ resolve: (s) => s.sample.inProgressWorkUnits }),
    throughputPerSecond: t.float({ resolve: (s) => s.sample.throughputPerSecond }),
  }),
});

const HistoryType = builder.objectRef<HistoryView>('DeriverStatusHistory').implement({
  description:
    "A workspace's status sampled at an interval over a recent window, as this instance heard it since it started: the workspaces changed lately (at most 100), each until nothing has changed in it for the window and it is idle.",
  fields: (t) => ({
    sampleSeconds: t.int({
      description: 'Seconds between samples.',
      resolve: (h) => Math.round(h.sampleMs / 1000),
    }),
    windowSeconds: t.int({
      description: 'How far back samples go, in seconds.',
      resolve: (h) => Math.round(h.windowMs / 1000),
    }),
    samples: t.field({
      type: [SampleType],
      description: 'Oldest first; empty for a workspace nothing changed in lately.',
      resolve: (h) => h.samples.map((sample) => ({ sample, now: h.now })),
    }),
  }),
});

builder.queryField('deriverStatusHistory', (t) =>
  t.field({
    type: HistoryType,
    description:
      "The workspace's backlog (pending and in progress) and throughput over the last minutes, sampled on the server: the dashboard's chart opens with it.",
    args: t.validate(
      { workspaceId: t.arg.id({ description: 'Omitted means "default".' }) },
      statusFilterInput.pick({ workspaceId: true }),
    ),
    resolve: (_root, { workspaceId }, ctx) => {
      authorize(ctx.principal, { kind: 'status', workspaceId });
      const { history } = ctx;
      return {
        samples: history.samples(workspaceId),
        sampleMs: history.sampleMs,
        windowMs: history.windowMs,
        now: Date.now(),
      };
    },
  }),
);
