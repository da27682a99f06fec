/**
 * Rate limits and concurrency per task type (docs/deriver.md, "Rate limits"): the pacing rule
 * (`admit`), the stores' state (one contract suite: both stores; PostgreSQL shared between
 * processes), two schedulers on one PostgreSQL database sharing one limit, a provider's 429 holding
 * every instance back without burning an attempt, and a type capped at one unit at a time while
 * another type goes on.
 */
import { setImmediate as setImmediateAsync } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError } from '../src/errors.ts';
import { openStore } from '../src/store/open-store.ts';
import { admit, OPEN_RATE, type RateLimit, type RateState } from '../src/store/rate-limits.ts';
import type { Store } from '../src/store/store.ts';
import { createHarness, deferred, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';
import { POSTGRES, STORES } from './support/stores.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('admit (the pacing rule)', () => {
  it('spaces calls intervalMs / requests apart, and never more than `requests` in any window', () => {
    const limit: RateLimit = { requests: 4, intervalMs: 1_000 };
    let state: RateState = OPEN_RATE;
    const starts: number[] = [];
    for (let now = 0; now < 10_000; now += 7) {
      const admission = admit(state, limit, 0, now);
      if (admission.ok) {
        state = admission.next;
        starts.push(now);
      }
    }
    for (let i = 0; i + 4 < starts.length; i++)
      expect(starts[i + 4]! - starts[i]!).toBeGreaterThanOrEqual(1_000);
    expect(starts.length).toBeGreaterThanOrEqual(39); // about 4 a second for 10 s
  });

  it('pays tokens off before the next call, and holds everything during a pause', () => {
    const limit: RateLimit = { tokens: 1_000, intervalMs: 60_000 };
    const first = admit(OPEN_RATE, limit, 500, 0);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    // 500 of 1,000 tokens a minute: the next call waits 30 s.
    expect(admit(first.next, limit, 10, 1_000)).toEqual({ ok: false, waitMs: 29_000 });
    expect(admit({ ...OPEN_RATE, pausedUntil: 5_000 }, undefined, 0, 1_000)).toEqual({
      ok: false,
      waitMs: 4_000,
    });
    expect(admit(OPEN_RATE, undefined, 0, 1_000).ok).toBe(true);
  });
});

describe.each(STORES)('store rate-limit state ($name)', (backend) => {
  async function open(url: string): Promise<Store> {
    const store = await openStore(url);
    cleanups.push(() => store.close());
    return store;
  }

  it('admits a call, holds the next one back with its wait, and records a pause', async () => {
    const location = await backend.fresh();
    cleanups.push(location.dispose);
    const store = await open(location.url);
    const limit: RateLimit = { requests: 1, intervalMs: 60_000 };
    expect((await store.rateLimits.take('representation', limit, 10)).ok).toBe(true);
    const second = await store.rateLimits.take('representation', limit, 10);
    expect(second.ok).toBe(false);
    expect(!second.ok && second.waitMs).toBeGreaterThan(59_000);
    // Another type is not held back.
    expect((await store.rateLimits.take('summary', limit, 10)).ok).toBe(true);
    await store.rateLimits.pause('summary', 30_000);
    const paused = await store.rateLimits.take('summary', undefined, 0);
    expect(paused.ok).toBe(false);
    const waits = await store.rateLimits.waits();
    expect(waits.get('summary')).toBeGreaterThan(29_000);
    expect(waits.get('representation')).toBeGreaterThan(59_000);
  });
});

describe('rate limits shared on PostgreSQL', () => {
  it('two processes share one state: a call or a pause by one holds the other back', async () => {
    const location = await POSTGRES.fresh();
    cleanups.push(location.dispose);
    const a = await openStore(location.url);
    const b = await openStore(location.url);
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const limit: RateLimit = { requests: 1, intervalMs: 60_000 };
    expect((await a.rateLimits.take('representation', limit, 0)).ok).toBe(true);
    expect((await b.rateLimits.take('representation', limit, 0)).ok).toBe(false);
    await b.rateLimits.pause('summary', 60_000);
    expect((await a.rateLimits.take('summary', undefined, 0)).ok).toBe(false);
  });

  /** Two harnesses (two schedulers) on one fresh PostgreSQL database, with messages in `sessions` sessions. */
  async function twoInstances(sessions: number, messages: number): Promise<[Harness, Harness]> {
    const location = await POSTGRES.fresh();
    cleanups.push(location.dispose);
    const first = await createHarness({ storeUrl: location.url });
    const second = await createHarness({ storeUrl: location.url });
    cleanups.push(
      () => first.close(),
      () => second.close(),
    );
    await first.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    for (let s = 0; s < sessions; s++) {
      await first.deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: 'a' }] });
      await sendMessages(first.deriver, { sessionId: `s${s}`, peerId: 'a', count: messages });
    }
    return [first, second];
  }

  it('two schedulers stay within one limit together', async () => {
    const [first, second] = await twoInstances(4, 3);
    const starts: number[] = [];
    const limit: RateLimit = { requests: 4, intervalMs: 1_000 };
    for (const harness of [first, second]) {
      harness.startScheduler({
        concurrency: 4,
        pollMs: 50,
        taskTypes: { representation: { rateLimit: limit } },
        handlers: { representation: () => void starts.push(Date.now()), summary: unexpectedSummary },
      });
    }
    await first.idle();
    expect(starts).toHaveLength(12);
    starts.sort((x, y) => x - y);
    // No 1-second window held more than 4 starts (a few ms allowed for the hop from admission to call).
    for (let i = 0; i + 4 < starts.length; i++)
      expect(starts[i + 4]! - starts[i]!).toBeGreaterThanOrEqual(950);
  });

  it("a provider's 429 holds every instance back and burns no attempt", async () => {
    const [first, second] = await twoInstances(6, 4);
    let penaltyUntil = 0;
    const received429 = new Map<Harness, number>();
    const limited = deferred();
    let calls = 0;
    /** A provider that answers 429 (Retry-After 1 s) to its 5th call and to every call during that wait. */
    const provider = (harness: Harness) => async () => {
      calls++;
      const now = Date.now();
      if (calls === 5 || now < penaltyUntil) {
        if (calls === 5) penaltyUntil = now + 1_000;
        received429.set(harness, (received429.get(harness) ?? 0) + 1);
        limited.resolve();
        throw new RateLimitedError('HTTP 429: slow down', 1);
      }
    };
    const start = (harness: Harness) =>
      harness.startScheduler({
        concurrency: 2,
        pollMs: 50,
        maxAttempts: 1, // an attempt counted for a 429 would fail its task at once
        // A generous limit: every call asks the shared state, where the pause is.
        taskTypes: { representation: { rateLimit: { requests: 1_000, intervalMs: 1_000 } } },
        handlers: { representation: provider(harness), summary: unexpectedSummary },
      });
    start(first);
    await limited.promise;
    // Once the pause is in the shared state, a second instance starts: it must not call the
    // provider until the pause is over (without sharing it would meet the provider's wait at once).
    // (A wait of over half a second is the pause: paced calls here wait 1 ms.)
    const pauseRecorded = async () =>
      ((await second.store.rateLimits.waits()).get('representation') ?? 0) > 500;
    while (!(await pauseRecorded()) && Date.now() < penaltyUntil) await setImmediateAsync();
    const secondStarted = Date.now();
    start(second);
    let secondCalls = 0;
    second.scheduler?.events.on('task:started', () => {
      secondCalls++;
    });
    await first.idle();
    const tasks = await first.store.listTasks();
    expect(tasks).toHaveLength(24);
    expect(tasks.every((t) => t.state === 'succeeded' && t.failures === 0)).toBe(true);
    expect(received429.get(second) ?? 0).toBe(0);
    expect(secondCalls).toBeGreaterThan(0);
    expect(penaltyUntil).toBeGreaterThan(secondStarted);
    // The first instance met the wait only with calls already on their way (its 2 workers).
    expect(received429.get(first)).toBeLessThanOrEqual(2);
  });
});

it('a task type capped at one unit at a time while the other type goes on', async () => {
  const h = await createHarness();
  cleanups.push(() => h.close());
  await h.deriver.upsertWorkspace({ id: 'default', settings: { messagesPerShortSummary: 2 } });
  for (let s = 0; s < 4; s++) {
    await h.deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: 'a' }] });
    await sendMessages(h.deriver, { sessionId: `s${s}`, peerId: 'a', count: 4 });
  }
  const summaryStarted = deferred();
  let representations = 0;
  let maxRepresentations = 0;
  let overlapped = false;
  h.startScheduler({
    concurrency: 4,
    taskTypes: { representation: { concurrency: 1 } },
    handlers: {
      representation: async () => {
        representations++;
        maxRepresentations = Math.max(maxRepresentations, representations);
        try {
          await summaryStarted.promise; // a summary runs beside it
          overlapped = true;
        } finally {
          representations--;
        }
      },
      summary: () => summaryStarted.resolve(),
    },
  });
  await h.idle();
  expect(maxRepresentations).toBe(1);
  expect(overlapped).toBe(true);
  const status = await h.status.get({ workspaceId: 'default' });
  expect(status).toMatchObject({ completedWorkUnits: status.totalWorkUnits, failedWorkUnits: 0 });
});
