/**
 * The command line of the server: every setting is an environment variable (docs/configuration.md), and a
 * flag of the same name in kebab case sets it too (`--port 4000`, `--database-url=file:x.db`), the
 * flag winning. `--help` lists them all with their defaults.
 */
import { parseArgs as parseArgv } from 'node:util';
import { loadConfig } from './config.ts';

export interface Setting {
  readonly env: string;
  readonly meaning: string;
  /** What applies when it is unset. */
  readonly default: string;
}

/** What applies with nothing set: the defaults live in `config.ts` only. */
const DEFAULTS = loadConfig({});

/** Every setting `loadConfig` reads, in the order `--help` lists them. */
export const SETTINGS: readonly Setting[] = [
  { env: 'PORT', meaning: 'HTTP and WebSocket port (0 picks a free one)', default: String(DEFAULTS.port) },
  { env: 'HOST', meaning: 'bind address', default: DEFAULTS.host },
  {
    env: 'DATABASE_URL',
    meaning: 'file:PATH (embedded SQLite) or postgres://user:pass@host:port/db[?schema=NAME]',
    default: DEFAULTS.databaseUrl,
  },
  {
    env: 'HONCHO_DATABASE_URL',
    meaning: "a running Honcho's PostgreSQL (attached with deriver-live honcho attach): serve its status",
    default: 'unset',
  },
  {
    env: 'WORKER_CONCURRENCY',
    meaning: 'work units processed at once; 0 runs an API-only instance',
    default: String(DEFAULTS.workerConcurrency),
  },
  { env: 'SERVE_API', meaning: 'false runs a worker-only instance (health checks only)', default: 'true' },
  {
    env: 'HANDLER_URL',
    meaning: 'POST every task to this URL (a deriver in any language)',
    default: 'unset: demo handler',
  },
  {
    env: 'HANDLER_SECRET',
    meaning: 'key of the X-Deriver-Signature HMAC on those requests',
    default: 'unset: unsigned',
  },
  {
    env: 'TASK_TIMEOUT_MS',
    meaning: 'time one attempt of a task may take',
    default: String(DEFAULTS.taskTimeoutMs),
  },
  {
    env: 'MAX_ATTEMPTS',
    meaning: 'attempts before a task fails for good',
    default: String(DEFAULTS.maxAttempts),
  },
  {
    env: 'WORKER_ID',
    meaning: "this process's lease identity: restarted with it, it takes its leases back at once",
    default: 'HOSTNAME:HOST:PORT',
  },
  {
    env: 'LEASE_MS',
    meaning: "lease length: a crashed process's units are taken over this long after its last heartbeat",
    default: String(DEFAULTS.leaseMs),
  },
  {
    env: 'RETENTION',
    meaning:
      'finished task rows and settled webhook deliveries older than this (30m, 12h, 7d) are pruned in batches; off keeps them',
    default: '7d',
  },
  {
    env: 'REPRESENTATION_BATCH',
    meaning:
      'batches of representation tasks: on (512 tokens, 50 tasks, 30m) or "tokens=512 tasks=32 wait=5m"',
    default: 'off',
  },
  { env: 'SUMMARY_BATCH', meaning: 'the same for summary tasks', default: 'off' },
  {
    env: 'REPRESENTATION_RATE_LIMIT',
    meaning: 'calls and tokens per interval, shared on PostgreSQL: "requests=500 tokens=200000 per=1m"',
    default: 'off',
  },
  { env: 'SUMMARY_RATE_LIMIT', meaning: 'the same for summary tasks', default: 'off' },
  {
    env: 'REPRESENTATION_CONCURRENCY',
    meaning: 'representation units this process runs at once at most',
    default: 'WORKER_CONCURRENCY',
  },
  {
    env: 'SUMMARY_CONCURRENCY',
    meaning: 'summary units this process runs at once at most',
    default: 'WORKER_CONCURRENCY',
  },
  {
    env: 'REPRESENTATION_STUCK_AFTER',
    meaning: 'a representation task running longer than this (30s, 5m) is flagged stuck; off',
    default: 'off',
  },
  { env: 'SUMMARY_STUCK_AFTER', meaning: 'the same for summary tasks', default: 'off' },
  {
    env: 'WEBHOOK_ALLOW_PRIVATE',
    meaning: 'true lets webhooks go to loopback and private addresses (a receiver on this host)',
    default: 'false',
  },
  {
    env: 'WEBHOOK_TIMEOUT_MS',
    meaning: 'time one webhook delivery request may take',
    default: String(DEFAULTS.webhookTimeoutMs),
  },
  {
    env: 'DEMO_TASK_MS',
    meaning: 'delay of the built-in demo handler per task',
    default: String(DEFAULTS.demoTaskMs),
  },
  {
    env: 'COALESCE_MS',
    meaning: 'default coalescing window of status subscriptions',
    default: String(DEFAULTS.coalesceMs),
  },
  {
    env: 'STATUS_CACHE_ENTRIES',
    meaning:
      'status sums kept in memory for filters nobody watches (one per filter, plus one per session of a breakdown)',
    default: String(DEFAULTS.statusCacheEntries),
  },
  {
    env: 'LOG_LEVEL',
    meaning: 'fatal, error, warn, info, debug, trace or silent',
    default: DEFAULTS.logLevel,
  },
  {
    env: 'AUTH_JWT_SECRET',
    meaning: 'turns auth on: keys are JWTs signed with it (HS256, 32+ bytes)',
    default: 'unset: auth off',
  },
  { env: 'CORS_ORIGINS', meaning: 'comma-separated web origins allowed besides the own', default: 'none' },
  {
    env: 'INTROSPECTION',
    meaning: 'true/false: schema introspection and suggestions',
    default: 'on without auth',
  },
  {
    env: 'MAX_BODY_BYTES',
    meaning: 'largest HTTP request body',
    default: String(DEFAULTS.limits.maxBodyBytes),
  },
  {
    env: 'MAX_INFLIGHT_BODY_BYTES',
    meaning: 'bytes of all request bodies being received at once',
    default: String(DEFAULTS.limits.maxInflightBodyBytes),
  },
  {
    env: 'WS_MAX_PAYLOAD_BYTES',
    meaning: 'largest WebSocket message',
    default: String(DEFAULTS.limits.wsMaxPayloadBytes),
  },
  {
    env: 'MAX_SUBSCRIPTIONS_PER_SOCKET',
    meaning: 'operations open at once on one WebSocket',
    default: String(DEFAULTS.limits.maxSubscriptionsPerSocket),
  },
  {
    env: 'MAX_CONNECTIONS_PER_ADDRESS',
    meaning: 'open connections per client address; 0 no cap',
    default: String(DEFAULTS.limits.maxConnectionsPerAddress),
  },
  {
    env: 'MUTATIONS_PER_SECOND',
    meaning: 'mutations per client (burst twice that); 0 no limit',
    default: String(DEFAULTS.limits.mutationsPerSecond),
  },
];

/** `PORT` -> `--port`. */
export const flagOf = (env: string): string => `--${env.toLowerCase().replaceAll('_', '-')}`;

export type ParsedArgs =
  | { readonly kind: 'help' }
  | { readonly kind: 'run'; readonly env: NodeJS.ProcessEnv }
  | { readonly kind: 'error'; readonly message: string };

/** Reads `argv` (without node and the script) over `env`; flags win over the environment. */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedArgs {
  const options: Record<string, { type: 'string' } | { type: 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const setting of SETTINGS) options[flagOf(setting.env).slice(2)] = { type: 'string' };
  let parsed: ReturnType<typeof parseArgv>;
  try {
    parsed = parseArgv({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (error) {
    return { kind: 'error', message: argumentError(error, argv) };
  }
  if (parsed.values.help) return { kind: 'help' };
  const out: NodeJS.ProcessEnv = { ...env };
  for (const setting of SETTINGS) {
    const value = parsed.values[flagOf(setting.env).slice(2)];
    if (typeof value === 'string') out[setting.env] = value;
  }
  return { kind: 'run', env: out };
}

/** `node:util` `parseArgs`'s refusal as one line naming the argument: "unknown argument ...". */
export function argumentError(error: unknown, argv: readonly string[], help = '--help'): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const named = /'(-[^' ]*)/.exec(message)?.[1] ?? '';
  const flag = named.split('=')[0] ?? named;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown argument "${flag}" (see ${help})`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return `${flag} needs a value (see ${help})`;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const extra = argv.find((arg) => !arg.startsWith('-')) ?? '';
    return `unexpected argument "${extra}" (see ${help})`;
  }
  throw error;
}

/** The `--help` text. */
export function helpText(): string {
  return [
    'Deriver Live: a work-unit scheduler for agent-memory derivers, with live task status over GraphQL.',
    '',
    'Usage: deriver-live start [flags]    (in a clone: npm start -- [flags])',
    '',
    'Every setting is an environment variable; the flag of the same name sets it too and wins.',
    '',
    ...SETTINGS.map((s) => `  ${flagOf(s.env)}, ${s.env}  [default: ${s.default}]\n      ${s.meaning}`),
    '',
    'The dashboard is at / and GraphiQL at /graphql; /healthz and /readyz answer health checks.',
    '',
  ].join('\n');
}
