/**
 * Durable webhooks in GraphQL (docs/webhooks.md): register, list (with what the deliveries did),
 * test and remove a workspace's endpoints. An admin key or a key of the workspace.
 */
import { z } from 'zod';
import { authorize } from '../auth/authorize.ts';
import { limits } from '../domain/limits.ts';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType, webhookTest } from '../domain/webhook-events.ts';
import { InvalidInputError, NotFoundError } from '../errors.ts';
import type { Store, WebhookEndpointInfo } from '../store/store.ts';
import { refusedAddress, refusedUrl, shownUrl } from '../webhooks/destination.ts';
import { builder } from './builder.ts';
import { workspaceOf } from './filter-args.ts';
import { iso } from './queue-api.ts';

/** GraphQL names of the event types: `queue.empty` is QUEUE_EMPTY. */
const enumName = (type: string) => type.toUpperCase().replace('.', '_');
const SUBSCRIBABLE = WEBHOOK_EVENT_TYPES.filter((type) => type !== 'webhook.test');

const WebhookEventEnum = builder.enumType('WebhookEvent', {
  description: 'What a webhook endpoint receives (docs/webhooks.md).',
  values: Object.fromEntries(
    SUBSCRIBABLE.map((type) => [enumName(type), { value: type, description: `The "${type}" event.` }]),
  ) as Record<string, { value: WebhookEventType }>,
});

const WebhookEndpointType = builder.objectRef<WebhookEndpointInfo>('WebhookEndpoint').implement({
  description: 'A registered webhook endpoint and what its deliveries did. Its secret is never shown.',
  fields: (t) => ({
    id: t.id({ resolve: (e) => String(e.id) }),
    workspaceId: t.exposeID('workspaceId'),
    url: t.string({
      description: 'The URL, never with credentials (none can be registered; older ones are hidden).',
      resolve: (e) => shownUrl(e.url),
    }),
    events: t.field({ type: [WebhookEventEnum], resolve: (e) => [...e.events] }),
    createdAt: t.string({ resolve: (e) => iso(e.createdAt) ?? '' }),
    pendingDeliveries: t.int({
      description: 'Not delivered yet (retrying with backoff).',
      resolve: (e) => e.pending,
    }),
    deliveredDeliveries: t.int({ resolve: (e) => e.delivered }),
    failedDeliveries: t.int({
      description: 'Given up on: not delivered within a day.',
      resolve: (e) => e.failed,
    }),
    lastError: t.string({
      nullable: true,
      description: 'Why its latest failed attempt failed.',
      resolve: (e) => e.lastError,
    }),
    lastDeliveredAt: t.string({ nullable: true, resolve: (e) => iso(e.lastDeliveredAt) }),
  }),
});

const createWebhookInput = z.strictObject({
  workspaceId: z.string().nullish(),
  url: z
    .string()
    .max(2048, { error: 'must be at most 2048 characters' })
    .refine((url) => URL.canParse(url) && /^https?:$/.test(new URL(url).protocol), {
      error: 'must be an http:// or https:// URL',
    })
    .refine((url) => !URL.canParse(url) || refusedUrl(new URL(url)) === null, {
      error: 'may not carry credentials (user:password@): deliveries are signed with the secret instead',
    }),
  events: z
    .array(z.enum(SUBSCRIBABLE as [WebhookEventType, ...WebhookEventType[]]))
    .min(1, { error: 'must name at least one event' }),
  secret: z
    .string()
    .min(16, { error: 'must be at least 16 characters (e.g. the output of: openssl rand -hex 32)' })
    .max(256, { error: 'must be at most 256 characters' }),
});

const endpointIdInput = z.strictObject({
  workspaceId: z.string().nullish(),
  id: z.string().regex(/^\d{1,15}$/, { error: 'must be a webhook id (as createWebhook returns it)' }),
});

/** The endpoint `id` of the workspace, with its figures; NOT_FOUND naming `id` when there is none. */
async function endpointOf(ctx: { readonly store: Store }, workspaceId: string, id: string) {
  const endpoint = (await ctx.store.listWebhooks(workspaceId)).find((e) => String(e.id) === id);
  if (!endpoint) throw new NotFoundError('webhook', id, 'id');
  return endpoint;
}

builder.queryField('webhooks', (t) =>
  t.field({
    type: [WebhookEndpointType],
    description: "The workspace's webhook endpoints, by id, with their deliveries' figures.",
    args: { workspaceId: t.arg.id() },
    resolve: async (_root, args, ctx) => {
      const workspaceId = workspaceOf(args);
      authorize(ctx.principal, { kind: 'workspace', workspaceId });
      return ctx.webhooks.store.listWebhooks(workspaceId);
    },
  }),
);

builder.mutationField('createWebhook', (t) =>
  t.field({
    type: WebhookEndpointType,
    description:
      'Registers an endpoint for some events of the workspace. Each delivery is signed with the secret (X-Honcho-Signature: hex HMAC-SHA256 of the body), retried with backoff for a day, and carries X-Deriver-Event-Id for deduplication.',
    args: {
      workspaceId: t.arg.id(),
      url: t.arg.string({ required: true }),
      events: t.arg({ type: [WebhookEventEnum], required: true }),
      secret: t.arg.string({ required: true }),
    },
    validate: createWebhookInput,
    resolve: async (_root, args, ctx) => {
      const workspaceId = workspaceOf(args);
      authorize(ctx.principal, { kind: 'workspace', workspaceId });
      const host = new URL(args.url).hostname;
      const refused = host === 'localhost' ? 'localhost is this host' : refusedAddress(host);
      if (!ctx.webhooks.allowPrivate && refused) {
        throw new InvalidInputError([
          {
            path: ['url'],
            message: `${refused}: webhooks go to public internet addresses unless the server runs with WEBHOOK_ALLOW_PRIVATE=true`,
          },
        ]);
      }
      const created = await ctx.webhooks.store.createWebhook({
        workspaceId,
        url: args.url,
        events: args.events,
        secret: args.secret,
        maxPerWorkspace: limits.webhooksPerWorkspace,
      });
      if (!created) {
        throw new InvalidInputError([
          {
            path: ['workspaceId'],
            message: `workspace ${workspaceId} has ${limits.webhooksPerWorkspace} webhook endpoints, the most it may have: remove one (removeWebhook) first`,
          },
        ]);
      }
      return endpointOf(ctx.webhooks, workspaceId, String(created.id));
    },
  }),
);

builder.mutationField('removeWebhook', (t) =>
  t.boolean({
    description: 'Removes an endpoint and its deliveries (undelivered ones are dropped).',
    args: { workspaceId: t.arg.id(), id: t.arg.id({ required: true }) },
    validate: endpointIdInput,
    resolve: async (_root, args, ctx) => {
      const workspaceId = workspaceOf(args);
      authorize(ctx.principal, { kind: 'workspace', workspaceId });
      if (!(await ctx.webhooks.store.removeWebhook(workspaceId, Number(args.id))))
        throw new NotFoundError('webhook', args.id, 'id');
      return true;
    },
  }),
);

builder.mutationField('testWebhook', (t) =>
  t.field({
    type: WebhookEndpointType,
    description:
      'Sends the endpoint a "webhook.test" event now (delivered, signed and retried like any other).',
    args: { workspaceId: t.arg.id(), id: t.arg.id({ required: true }) },
    validate: endpointIdInput,
    resolve: async (_root, args, ctx) => {
      const workspaceId = workspaceOf(args);
      authorize(ctx.principal, { kind: 'workspace', workspaceId });
      await endpointOf(ctx.webhooks, workspaceId, args.id);
      await ctx.webhooks.store.enqueueWebhookEvent(webhookTest(workspaceId, Date.now()), Number(args.id));
      ctx.webhooks.wake();
      return endpointOf(ctx.webhooks, workspaceId, args.id);
    },
  }),
);
