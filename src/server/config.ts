/**
 * Start-up configuration from environment variables (SPEC section 8). Every value is validated at
 * once; a bad one stops start-up with one line naming the variable and what is expected.
 */
import { z } from 'zod';

export interface Config {
  /** HTTP and WebSocket port; 0 picks a free one. @default 4000 */
  readonly port: number;
  /** Bind address. @default 127.0.0.1 */
  readonly host: string;
  /** `file:PATH` (embedded SQLite). @default file:./data/deriver-live.db */
  readonly databaseUrl: string;
  /** Path of the SQLite file, from `databaseUrl`. */
  readonly databasePath: string;
  /** Work units processed at once by this process; 0 runs an API-only instance. @default 8 */
  readonly workerConcurrency: number;
  /** Delay of the built-in demo handler per task, in ms. @default 250 */
  readonly demoTaskMs: number;
  /** Default coalescing window of status subscriptions, in ms. @default 100 */
  readonly coalesceMs: number;
  /** pino log level. @default info */
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

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
      if (url.startsWith('file:') && url.length > 'file:'.length) return url;
      ctx.addIssue({
        code: 'custom',
        message: /^postgres(ql)?:\/\//.test(url)
          ? 'DATABASE_URL: PostgreSQL is not available in this build yet; use file:PATH for the embedded SQLite store'
          : `DATABASE_URL must be file:PATH (got "${url}")`,
      });
      return z.NEVER;
    }),
  REDIS_URL: z
    .string()
    .optional()
    .refine((raw) => !raw, {
      message: 'REDIS_URL: Redis fan-out is not available in this build yet; unset it to run one instance',
    }),
  AUTH_JWT_SECRET: z
    .string()
    .optional()
    .refine((raw) => !raw, {
      message:
        'AUTH_JWT_SECRET: authentication is not available in this build yet; refusing to start without the auth you asked for',
    }),
  WORKER_CONCURRENCY: integer('WORKER_CONCURRENCY', 0, 1_000, 8),
  DEMO_TASK_MS: integer('DEMO_TASK_MS', 0, 3_600_000, 250),
  COALESCE_MS: integer('COALESCE_MS', 0, 10_000, 100),
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

/** Reads the configuration; throws `ConfigError` with one line naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues[0]?.message ?? 'invalid configuration');
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    databasePath: e.DATABASE_URL.slice('file:'.length),
    workerConcurrency: e.WORKER_CONCURRENCY,
    demoTaskMs: e.DEMO_TASK_MS,
    coalesceMs: e.COALESCE_MS,
    logLevel: e.LOG_LEVEL,
  };
}
