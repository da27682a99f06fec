import { describe, expect, it } from 'vitest';
import { createTokenBuckets } from '../src/util/token-bucket.ts';

describe('token buckets (injected clock)', () => {
  it('allows a burst, then one take per 1/rate seconds, with the wait as retry hint', () => {
    let now = 0;
    const buckets = createTokenBuckets({ ratePerSecond: 2, burst: 3, clock: () => now });
    expect([1, 2, 3, 4].map(() => buckets.take('a').kind)).toEqual([
      'allowed',
      'allowed',
      'allowed',
      'limited',
    ]);
    expect(buckets.take('a')).toEqual({ kind: 'limited', retryAfterSeconds: 1 });
    expect(buckets.take('b').kind).toBe('allowed'); // clients are independent
    now += 499;
    expect(buckets.take('a').kind).toBe('limited');
    now += 1;
    expect(buckets.take('a').kind).toBe('allowed');
    expect(buckets.take('a').kind).toBe('limited');
  });

  it('never holds more than the burst, and drops full buckets when it sweeps', () => {
    let now = 0;
    const buckets = createTokenBuckets({ ratePerSecond: 10, burst: 2, clock: () => now, sweepMs: 1_000 });
    for (const key of ['a', 'b', 'c']) buckets.take(key);
    expect(buckets.size()).toBe(3);
    now += 60_000;
    expect([1, 2, 3].map(() => buckets.take('a').kind)).toEqual(['allowed', 'allowed', 'limited']);
    expect(buckets.size()).toBe(1); // b and c refilled and were dropped
  });

  it('a rate of 0 turns the limit off', () => {
    const buckets = createTokenBuckets({ ratePerSecond: 0 });
    for (let i = 0; i < 1_000; i++) expect(buckets.take('a').kind).toBe('allowed');
    expect(buckets.size()).toBe(0);
  });
});
