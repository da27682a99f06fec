/**
 * Per-task-type settings from the environment (docs/configuration.md, "Batches, rate limits and
 * concurrency per task type"): `REPRESENTATION_BATCH`, `REPRESENTATION_RATE_LIMIT`,
 * `REPRESENTATION_CONCURRENCY`, `REPRESENTATION_STUCK_AFTER`, and the same with `SUMMARY_`. A batch and a rate limit are written
 * as `key=value` pairs separated by spaces or commas, e.g. `tokens=512 tasks=32 wait=30m` and
 * `requests=60 tokens=40000 per=1m`.
 */
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import type { TaskTypeLimits } from '../scheduler/options.ts';
import type { BatchPolicies, BatchPolicy } from '../store/queue-plan.ts';
import type { RateLimit } from '../store/rate-limits.ts';
import { parseDurationMs } from '../util/duration.ts';

/** What a batch setting of only `on` means: Honcho's representation batching. */
export const DEFAULT_BATCH: BatchPolicy = { maxTasks: 50, maxTokens: 512, maxWaitMs: 30 * 60_000 };

export interface TaskTypeConfig {
  readonly batches: BatchPolicies;
  /** Rate limits, concurrency and when a running task counts as stuck (`stuckAfterMs`). */
  readonly limits: Readonly<Partial<Record<TaskType, TaskTypeLimits>>>;
}

/** The variable names of one task type. */
export const taskTypeVariables = (type: TaskType) => {
  const prefix = type.toUpperCase();
  return {
    batch: `${prefix}_BATCH`,
    rateLimit: `${prefix}_RATE_LIMIT`,
    concurrency: `${prefix}_CONCURRENCY`,
    stuckAfter: `${prefix}_STUCK_AFTER`,
  } as const;
};

/** Every variable this file reads. */
export const TASK_TYPE_VARIABLES: readonly string[] = TASK_TYPES.flatMap((type) =>
  Object.values(taskTypeVariables(type)),
);

/** `key=value` pairs; a sentence naming the variable when the text is not that. */
function pairsOf(name: string, raw: string, keys: readonly string[]): Map<string, string> | string {
  const pairs = new Map<string, string>();
  for (const part of raw.split(/[\s,]+/).filter(Boolean)) {
    const [key, value, extra] = part.split('=');
    if (!key || value === undefined || extra !== undefined || !keys.includes(key)) {
      return `${name} must be key=value pairs with keys ${keys.join(', ')} (got "${part}" in "${raw}")`;
    }
    pairs.set(key, value);
  }
  return pairs;
}

function wholeNumber(
  name: string,
  key: string,
  value: string | undefined,
  fallback?: number,
): number | string {
  if (value === undefined) return fallback ?? `${name} needs ${key}=...`;
  const n = Number(value);
  return /^\d+$/.test(value) && n >= 1 && Number.isSafeInteger(n)
    ? n
    : `${name}: ${key} must be a whole number of at least 1 (got "${value}")`;
}

function durationOf(name: string, key: string, value: string | undefined, fallback: number): number | string {
  if (value === undefined) return fallback;
  const ms = parseDurationMs(value);
  return ms !== null && ms > 0
    ? ms
    : `${name}: ${key} must be a duration like 500ms, 30s, 30m or 1h (got "${value}")`;
}

export function parseBatch(name: string, raw: string): BatchPolicy | string {
  if (raw.trim() === 'on') return DEFAULT_BATCH;
  const pairs = pairsOf(name, raw, ['tokens', 'tasks', 'wait']);
  if (typeof pairs === 'string') return pairs;
  const maxTokens = wholeNumber(name, 'tokens', pairs.get('tokens'), DEFAULT_BATCH.maxTokens);
  const maxTasks = wholeNumber(name, 'tasks', pairs.get('tasks'), DEFAULT_BATCH.maxTasks);
  const maxWaitMs = durationOf(name, 'wait', pairs.get('wait'), DEFAULT_BATCH.maxWaitMs);
  for (const value of [maxTokens, maxTasks, maxWaitMs]) if (typeof value === 'string') return value;
  return { maxTokens: maxTokens as number, maxTasks: maxTasks as number, maxWaitMs: maxWaitMs as number };
}

export function parseRateLimit(name: string, raw: string): RateLimit | string {
  const pairs = pairsOf(name, raw, ['requests', 'tokens', 'per']);
  if (typeof pairs === 'string') return pairs;
  if (!pairs.has('requests') && !pairs.has('tokens'))
    return `${name} needs requests=N, tokens=N or both (got "${raw}")`;
  const requests = pairs.has('requests') ? wholeNumber(name, 'requests', pairs.get('requests')) : undefined;
  const tokens = pairs.has('tokens') ? wholeNumber(name, 'tokens', pairs.get('tokens')) : undefined;
  const intervalMs = durationOf(name, 'per', pairs.get('per'), 60_000);
  for (const value of [requests, tokens, intervalMs]) if (typeof value === 'string') return value;
  return {
    requests: requests as number | undefined,
    tokens: tokens as number | undefined,
    intervalMs: intervalMs as number,
  };
}

/** The per-type settings of an environment; a sentence naming the variable when one is wrong. */
export function taskTypeConfigOf(env: NodeJS.ProcessEnv): TaskTypeConfig | string {
  const batches: Partial<Record<TaskType, BatchPolicy>> = {};
  const limits: Partial<Record<TaskType, TaskTypeLimits>> = {};
  for (const type of TASK_TYPES) {
    const names = taskTypeVariables(type);
    const batchRaw = env[names.batch]?.trim();
    if (batchRaw && batchRaw !== 'off') {
      const batch = parseBatch(names.batch, batchRaw);
      if (typeof batch === 'string') return batch;
      batches[type] = batch;
    }
    const limitRaw = env[names.rateLimit]?.trim();
    let rateLimit: RateLimit | undefined;
    if (limitRaw && limitRaw !== 'off') {
      const parsed = parseRateLimit(names.rateLimit, limitRaw);
      if (typeof parsed === 'string') return parsed;
      rateLimit = parsed;
    }
    const concurrencyRaw = env[names.concurrency]?.trim();
    let concurrency: number | undefined;
    if (concurrencyRaw) {
      const parsed = wholeNumber(names.concurrency, 'the value', concurrencyRaw);
      if (typeof parsed === 'string')
        return `${names.concurrency} must be a whole number of at least 1 (got "${concurrencyRaw}")`;
      concurrency = parsed;
    }
    const stuckRaw = env[names.stuckAfter]?.trim();
    let stuckAfterMs: number | undefined;
    if (stuckRaw && stuckRaw !== 'off') {
      const parsed = durationOf(names.stuckAfter, 'the value', stuckRaw, 0);
      if (typeof parsed === 'string')
        return `${names.stuckAfter} must be a duration like 30s, 5m or 1h, or off (got "${stuckRaw}")`;
      stuckAfterMs = parsed;
    }
    if (rateLimit || concurrency !== undefined || stuckAfterMs !== undefined)
      limits[type] = { rateLimit, concurrency, stuckAfterMs };
  }
  return { batches, limits };
}
