/**
 * Start-up configuration from environment variables (docs/configuration.md). Every value is validated at
 * once; a bad one stops start-up with one line naming the variable and what is expected.
 */

import { z } from 'zod';
import { MIN_SECRET_BYTES } from '../auth/keyring.ts';
import { limits } from '../domain/limits.ts';
import { DEFAULT_STATUS_ENTRIES } from '../status/status-engine.ts';
import { parseStoreUrl } from '../store/open-store.ts';
import { parseDurationMs } from '../util/duration.ts';
import { normalizeOrigin } from './guards/origin-policy.ts';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './server-limits.ts';
import { TASK_TYPE_VARIABLES, type TaskTypeConfig, taskTypeConfigOf } from './task-type-config.ts';

export interface Config {
  /** HTTP and WebSocket port; 0 picks a free one. @default 4000 */
  readonly port: number;
  /** Bind address. @default 127.0.0.1 */
  readonly host: string;
  /** `file:PATH` (embedded SQLite) or `postgres://...` (PostgreSQL). @default file:./data/deriver-live.db */
  readonly databaseUrl: string;
  /**
   * A running Honcho's PostgreSQL (attached with `deriver-live honcho attach`): the status served
   * is that Honcho's queue, pushed; this process then runs no workers. @default null
   */
  readonly honchoDatabaseUrl: string | null;
  /** Work units processed at once by this process; 0 runs an API-only instance. @default 8 */
  readonly workerConcurrency: number;
  /** Delay of the built-in demo handler per task, in ms. @default 250 */
  readonly demoTaskMs: number;
  /** Default coalescing window of status subscriptions, in ms. @default 100 */
  readonly coalesceMs: number;
  /**
   * Status sums kept in memory for filters nobody watches (a filter's sum is one entry, plus one
   * per session of its breakdown); watched filters always stay. @default 100000
   */
  readonly statusCacheEntries: number;
  /** pino log level. @default info */
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** HS256 secret of the keys; `null` turns authentication off. @default null */
  readonly authJwtSecret: string | null;
  /** Web origins allowed besides the server's own (`CORS_ORIGINS`, comma-separated). @default none */
  readonly allowedOrigins: readonly string[];
  /** Introspection and field suggestions. @default on without auth, off with auth */
  readonly introspection: boolean;
  /** Resource limits of the server. @default DEFAULT_SERVER_LIMITS */
  readonly limits: ServerLimits;
  /** Serve the GraphQL API; `false` runs a worker-only process (health checks only). @default true */
  readonly serveApi: boolean;
  /** POST every task to this URL (a deriver in any language, docs/deriver.md); `null`: in-process handlers. @default null */
  readonly handlerUrl: string | null;
  /** Key of the `X-Deriver-Signature` HMAC on those requests; `null`: unsigned. @default null */
  readonly handlerSecret: string | null;
  /** Time one attempt of a task may take, in ms (an HTTP handler's request too). @default 60000 */
  readonly taskTimeoutMs: number;
  /** Attempts before a task fails for good. @default 5 */
  readonly maxAttempts: number;
  /**
   * This process's identity for its leases: restarted with the same one after a crash, it takes
   * its leases back at once. @default `HOSTNAME:HOST:PORT` (unique on a machine while the port is
   * held); random with port 0
   */
  readonly workerId: string | null;
  /** Lease length: another process's crash frees its units this long after its last renewal. @default 30000 */
  readonly leaseMs: number;
  /** Finished task rows older than this are pruned on a schedule; `null` keeps them. @default 7 days */
  readonly retentionMs: number | null;
  /**
   * Per task type: batches (`REPRESENTATION_BATCH`, ...), rate limits (`..._RATE_LIMIT`) and this
   * process's concurrency (`..._CONCURRENCY`). @default none
   */
  readonly taskTypes: TaskTypeConfig;
  /** Webhooks may go to loopback and private addresses (docs/webhooks.md). @default false */
  readonly webhookAllowPrivate: boolean;
  /** Time one webhook delivery request may take, in ms. @default 30000 */
  readonly webhookTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const DAY_MS = 86_400_000;

const integer = (name: string, min: number, max: number, fallback: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return fallback;
      const value = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
        ctx.addIssue({
          code: 'custom',
          message: `${name} must be a whole number from ${min} to ${max} (got "${raw}")`,
        });
        return z.NEVER;
      }
      return value;
    });

/** `true` or `false`; unset or empty is `fallback`. */
const boolean = (name: string, fallback: boolean) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return fallback;
      if (raw === 'true' || raw === 'false') return raw === 'true';
      ctx.addIssue({ code: 'custom', message: `${name} must be true or false (got "${raw}")` });
      return z.NEVER;
    });

const envSchema = z.object({
  PORT: integer('PORT', 0, 65_535, 4000),
  HOST: z
    .string()
    .optional()
    .transform((raw) => raw || '127.0.0.1'),
  DATABASE_URL: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const url = raw || 'file:./data/deriver-live.db';
      try {
        parseStoreUrl(url);
        return url;
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: `DATABASE_URL ${(error as Error).message}` });
        return z.NEVER;
      }
    }),
  HONCHO_DATABASE_URL: z
    .string()
    .optional()
    .transform((raw) => raw || null)
    .refine((url) => url === null || /^postgres(ql)?:\/\//.test(url), {
      message:
        "HONCHO_DATABASE_URL must name a running Honcho's PostgreSQL (postgres://...), attached once with deriver-live honcho attach",
    }),
  REDIS_URL: z
    .string()
    .optional()
    .refine((raw) => !raw, {
      message:
        'REDIS_URL: Deriver Live needs no Redis: instances on one PostgreSQL database (DATABASE_URL=postgres://...) share status through LISTEN/NOTIFY; unset it',
    }),
  AUTH_JWT_SECRET: z
    .string()
    .optional()
    .transform((raw) => raw || null)
    .refine((secret) => secret === null || Buffer.byteLength(secret) >= MIN_SECRET_BYTES, {
      message: `AUTH_JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes long (e.g. the output of: openssl rand -hex 32)`,
    }),
  CORS_ORIGINS: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const origins = (raw ?? '')
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean);
      for (const origin of origins) {
        if (normalizeOrigin(origin) === null || origin === '*') {
          ctx.addIssue({
            code: 'custom',
            message: `CORS_ORIGINS must be a comma-separated list of origins like https://app.example.com (got "${origin}")`,
          });
          return z.NEVER;
        }
      }
      return origins;
    }),
  SERVE_API: boolean('SERVE_API', true),
  INTROSPECTION: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return undefined;
      if (raw === 'true' || raw === 'false') return raw === 'true';
      ctx.addIssue({ code: 'custom', message: `INTROSPECTION must be true or false (got "${raw}")` });
      return z.NEVER;
    }),
  MAX_BODY_BYTES: integer('MAX_BODY_BYTES', 1024, 2 ** 31, DEFAULT_SERVER_LIMITS.maxBodyBytes),
  MAX_INFLIGHT_BODY_BYTES: integer(
    'MAX_INFLIGHT_BODY_BYTES',
    1024,
    2 ** 40,
    DEFAULT_SERVER_LIMITS.maxInflightBodyBytes,
  ),
  WS_MAX_PAYLOAD_BYTES: integer(
    'WS_MAX_PAYLOAD_BYTES',
    1024,
    2 ** 31,
    DEFAULT_SERVER_LIMITS.wsMaxPayloadBytes,
  ),
  MAX_SUBSCRIPTIONS_PER_SOCKET: integer(
    'MAX_SUBSCRIPTIONS_PER_SOCKET',
    1,
    1_000_000,
    DEFAULT_SERVER_LIMITS.maxSubscriptionsPerSocket,
  ),
  MAX_CONNECTIONS_PER_ADDRESS: integer(
    'MAX_CONNECTIONS_PER_ADDRESS',
    0,
    10_000_000,
    DEFAULT_SERVER_LIMITS.maxConnectionsPerAddress,
  ),
  MUTATIONS_PER_SECOND: integer(
    'MUTATIONS_PER_SECOND',
    0,
    10_000_000,
    DEFAULT_SERVER_LIMITS.mutationsPerSecond,
  ),
  WORKER_CONCURRENCY: integer('WORKER_CONCURRENCY', 0, 1_000, 8),
  HANDLER_URL: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (!raw) return null;
      if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
        ctx.addIssue({
          code: 'custom',
          message: `HANDLER_URL must be an http:// or https:// URL (got "${raw}")`,
        });
        return z.NEVER;
      }
      return raw;
    }),
  HANDLER_SECRET: z
    .string()
    .optional()
    .transform((raw) => raw || null),
  TASK_TIMEOUT_MS: integer('TASK_TIMEOUT_MS', 1, 86_400_000, 60_000),
  MAX_ATTEMPTS: integer('MAX_ATTEMPTS', 1, 1_000, 5),
  WORKER_ID: z
    .string()
    .optional()
    .transform((raw) => raw || null),
  LEASE_MS: integer('LEASE_MS', 1_000, 3_600_000, 30_000),
  RETENTION: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return 7 * DAY_MS;
      if (raw === 'off') return null;
      const ms = parseDurationMs(raw);
      if (ms === null) {
        ctx.addIssue({
          code: 'custom',
          message: `RETENTION must be a duration like 30m, 12h or 7d, or off (got "${raw}")`,
        });
        return z.NEVER;
      }
      return ms;
    }),
  DEMO_TASK_MS: integer('DEMO_TASK_MS', 0, 3_600_000, 250),
  WEBHOOK_ALLOW_PRIVATE: boolean('WEBHOOK_ALLOW_PRIVATE', false),
  WEBHOOK_TIMEOUT_MS: integer('WEBHOOK_TIMEOUT_MS', 100, 600_000, 30_000),
  COALESCE_MS: integer('COALESCE_MS', 0, limits.coalesceMaxMs, 100),
  STATUS_CACHE_ENTRIES: integer('STATUS_CACHE_ENTRIES', 0, 100_000_000, DEFAULT_STATUS_ENTRIES),
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const level = raw || 'info';
      const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
      if ((levels as readonly string[]).includes(level)) return level as Config['logLevel'];
      ctx.addIssue({
        code: 'custom',
        message: `LOG_LEVEL must be one of ${levels.join(', ')} (got "${raw}")`,
      });
      return z.NEVER;
    }),
});

/** The environment variables the configuration reads. */
export const CONFIG_VARIABLES: readonly string[] = [...Object.keys(envSchema.shape), ...TASK_TYPE_VARIABLES];

/** Whether a bind address is reachable only from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Reads the configuration; throws `ConfigError` with one line naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues[0]?.message ?? 'invalid configuration');
  }
  const e = parsed.data;
  if (e.HANDLER_SECRET !== null && e.HANDLER_URL === null) {
    throw new ConfigError(
      'HANDLER_SECRET is set without HANDLER_URL: it signs the requests sent there; set both',
    );
  }
  const taskTypes = taskTypeConfigOf(env);
  if (typeof taskTypes === 'string') throw new ConfigError(taskTypes);
  if (!e.SERVE_API && e.WORKER_CONCURRENCY === 0) {
    throw new ConfigError(
      'SERVE_API=false with WORKER_CONCURRENCY=0 would do nothing: serve the API, run workers, or both',
    );
  }
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    honchoDatabaseUrl: e.HONCHO_DATABASE_URL,
    // Attached to a Honcho, its own deriver runs the tasks: this process runs none.
    workerConcurrency: e.HONCHO_DATABASE_URL ? 0 : e.WORKER_CONCURRENCY,
    demoTaskMs: e.DEMO_TASK_MS,
    coalesceMs: e.COALESCE_MS,
    statusCacheEntries: e.STATUS_CACHE_ENTRIES,
    logLevel: e.LOG_LEVEL,
    authJwtSecret: e.AUTH_JWT_SECRET,
    allowedOrigins: e.CORS_ORIGINS,
    introspection: e.INTROSPECTION ?? e.AUTH_JWT_SECRET === null,
    serveApi: e.SERVE_API,
    handlerUrl: e.HANDLER_URL,
    handlerSecret: e.HANDLER_SECRET,
    taskTimeoutMs: e.TASK_TIMEOUT_MS,
    maxAttempts: e.MAX_ATTEMPTS,
    workerId: e.WORKER_ID,
    leaseMs: e.LEASE_MS,
    retentionMs: e.RETENTION,
    taskTypes,
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    webhookTimeoutMs: e.WEBHOOK_TIMEOUT_MS,
    limits: {
      maxBodyBytes: e.MAX_BODY_BYTES,
      maxInflightBodyBytes: e.MAX_INFLIGHT_BODY_BYTES,
      wsMaxPayloadBytes: e.WS_MAX_PAYLOAD_BYTES,
      maxSubscriptionsPerSocket: e.MAX_SUBSCRIPTIONS_PER_SOCKET,
      maxConnectionsPerAddress: e.MAX_CONNECTIONS_PER_ADDRESS,
      mutationsPerSecond: e.MUTATIONS_PER_SECOND,
    },
  };
}
