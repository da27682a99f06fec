/**
 * Per-client rate limits: one token bucket per client key.
 *
 * ## State machine (one bucket)
 * A bucket holds up to `burst` tokens and gains `ratePerSecond` tokens a second, measured on the
 * injected clock. `take(key)` spends one token when the bucket has one (`allowed`) and otherwise
 * answers `limited` with the seconds until the next token. Buckets that have refilled completely
 * hold no information and are dropped by `sweep` (run every `sweepMs` of activity), so memory grows
 * with the clients active within the last `burst / ratePerSecond` seconds only.
 */

export interface TokenBucketOptions {
  /** Tokens gained per second; 0 turns the limit off (every `take` is allowed). */
  readonly ratePerSecond: number;
  /** Tokens a bucket can hold, i.e. the burst allowed after a quiet spell. @default 2 x ratePerSecond */
  readonly burst?: number;
  /** Milliseconds, monotonic. @default performance.now */
  readonly clock?: () => number;
  /** How often full buckets are dropped. @default 10000 */
  readonly sweepMs?: number;
}

export type TakeOutcome =
  | { readonly kind: 'allowed' }
  | { readonly kind: 'limited'; readonly retryAfterSeconds: number };

export interface TokenBuckets {
  take(key: string): TakeOutcome;
  /** Buckets held now (for tests and metrics). */
  size(): number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const ALLOWED: TakeOutcome = { kind: 'allowed' };

export function createTokenBuckets(options: TokenBucketOptions): TokenBuckets {
  const rate = options.ratePerSecond;
  const burst = Math.max(1, options.burst ?? Math.ceil(rate * 2));
  const clock = options.clock ?? (() => performance.now());
  const sweepMs = options.sweepMs ?? 10_000;
  const buckets = new Map<string, Bucket>();
  let lastSweep = clock();

  const refill = (bucket: Bucket, now: number): void => {
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
  };

  const sweep = (now: number): void => {
    lastSweep = now;
    for (const [key, bucket] of buckets) {
      refill(bucket, now);
      if (bucket.tokens >= burst) buckets.delete(key);
    }
  };

  return {
    take(key) {
      if (rate <= 0) return ALLOWED;
      const now = clock();
      if (now - lastSweep >= sweepMs) sweep(now);
      let bucket = buckets.get(key);
      if (bucket) refill(bucket, now);
      else {
        bucket = { tokens: burst, at: now };
        buckets.set(key, bucket);
      }
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return ALLOWED;
      }
      return { kind: 'limited', retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate)) };
    },
    size: () => buckets.size,
  };
}
