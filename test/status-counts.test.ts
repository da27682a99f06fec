import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import type { StatusCounts } from '../src/status/counts.ts';
import type { StatusQuery } from '../src/status/status-filter.ts';
import type { TaskRow } from '../src/store/store.ts';
import { createHarness, type Harness } from './helpers.ts';
import { STORES } from './support/stores.ts';

const PEERS = ['p0', 'p1', 'p2', 'p3'];
const SESSIONS = ['s0', 's1', 's2'];

/** Counts recomputed from the raw task rows (read through the store contract), the slow and obvious way. */
function bruteForce(rows: readonly TaskRow[], filter: Omit<StatusQuery, 'workspaceId'>): StatusCounts {
  const matching = rows.filter(
    (r) =>
      (filter.sessionId === undefined || r.key.sessionId === filter.sessionId) &&
      (filter.observerId === undefined || r.key.observerId === filter.observerId) &&
      (filter.senderId === undefined || r.key.senderId === filter.senderId),
  );
  const count = (...states: string[]) => matching.filter((r) => states.includes(r.state)).length;
  return {
    totalWorkUnits: matching.length,
    completedWorkUnits: count('succeeded', 'failed'),
    inProgressWorkUnits: count('running'),
    pendingWorkUnits: count('pending'),
    failedWorkUnits: count('failed'),
    retryingWorkUnits: matching.filter((r) => r.state === 'pending' && r.failures > 0).length,
  };
}

function allFilters(): Omit<StatusQuery, 'workspaceId'>[] {
  const peers = [undefined, ...PEERS, 'ghost'];
  const filters: Omit<StatusQuery, 'workspaceId'>[] = [];
  for (const sessionId of [undefined, ...SESSIONS])
    for (const observerId of peers)
      for (const senderId of peers) filters.push({ sessionId, observerId, senderId });
  return filters;
}

async function expectMatchesRawRows(h: Harness): Promise<void> {
  const rows = await h.store.listTasks();
  for (const filter of allFilters()) {
    const query = { workspaceId: 'default', ...filter };
    const expected = bruteForce(rows, filter);
    expect(await h.status.get(query), JSON.stringify(filter)).toEqual(expected);
    if (filter.sessionId === undefined) {
      const breakdown = SESSIONS.map((sessionId) => ({
        sessionId,
        ...bruteForce(rows, { ...filter, sessionId }),
      })).filter((s) => s.totalWorkUnits > 0);
      expect(await h.status.sessions(query), `sessions ${JSON.stringify(filter)}`).toEqual(breakdown);
    }
  }
}

function snapshotAll(h: Harness): Promise<StatusCounts[]> {
  return Promise.all(allFilters().map((f) => h.status.get({ workspaceId: 'default', ...f })));
}

const memberArb = fc.record({
  peerId: fc.constantFrom(...PEERS),
  observeOthers: fc.boolean(),
  observeMe: fc.constantFrom(null, true, false),
});

const workloadArb = fc.record({
  peerObserveMe: fc.array(fc.boolean(), { minLength: PEERS.length, maxLength: PEERS.length }),
  members: fc.array(fc.uniqueArray(memberArb, { selector: (m) => m.peerId, maxLength: 4 }), {
    minLength: SESSIONS.length,
    maxLength: SESSIONS.length,
  }),
  batches: fc.array(
    fc.record({
      session: fc.constantFrom(...SESSIONS),
      senders: fc.array(fc.constantFrom(...PEERS), { minLength: 1, maxLength: 4 }),
    }),
    { minLength: 1, maxLength: 12 },
  ),
  /** Per task id modulo 7: which fate the handler deals. */
  fates: fc.array(fc.constantFrom('ok', 'permanent', 'flaky'), { minLength: 7, maxLength: 7 }),
  /** Stop the scheduler after this many completions (null: run to idle). */
  stopAfter: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null }),
  /**
   * The status engine's memory budget (entries), tiny so that filters go cold and hot at random;
   * and, per completion, the filter asked about while tasks run (index into `allFilters()`).
   */
  statusEntries: fc.integer({ min: 0, max: 12 }),
  asked: fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
});

describe.each(STORES)('status counts ($name)', (backend) => {
  it('equal a brute-force recount of the raw rows for every filter, after random workloads', async () => {
    await fc.assert(
      fc.asyncProperty(workloadArb, async (w) => {
        const location = await backend.fresh();
        const h = await createHarness({ storeUrl: location.url, statusEntries: w.statusEntries });
        try {
          await h.deriver.upsertWorkspace({
            id: 'default',
            settings: { messagesPerShortSummary: 3, messagesPerLongSummary: 7 },
          });
          for (const [i, peerId] of PEERS.entries()) {
            await h.deriver.upsertPeer({ id: peerId, observeMe: w.peerObserveMe[i] });
          }
          for (const [i, sessionId] of SESSIONS.entries()) {
            await h.deriver.upsertSession({ id: sessionId, peers: w.members[i] });
          }
          for (const batch of w.batches) {
            await h.deriver.addMessages({
              sessionId: batch.session,
              messages: batch.senders.map((peerId) => ({ peerId, content: 'x' })),
            });
          }
          await expectMatchesRawRows(h);

          const violations: string[] = [];
          let lastTotal = 0;
          const everything = await h.status.watch({ workspaceId: 'default' }, { sessions: true });
          h.status.events.on('status:changed', () => {
            for (const s of [everything.counts(), ...everything.sessions()]) {
              const sum = s.pendingWorkUnits + s.inProgressWorkUnits + s.completedWorkUnits;
              if (s.totalWorkUnits !== sum) violations.push(`total ${s.totalWorkUnits} != ${sum}`);
              if (Object.values(s).some((v) => typeof v === 'number' && v < 0))
                violations.push('negative count');
              if (s.failedWorkUnits > s.completedWorkUnits) violations.push('failed > completed');
            }
            const total = everything.counts().totalWorkUnits;
            if (total < lastTotal) violations.push('total went down');
            lastTotal = total;
          });

          const dealFate: TaskHandler = ({ task, attempt }) => {
            const fate = w.fates[task.id % 7];
            if (fate === 'permanent') throw new PermanentTaskError('nope');
            if (fate === 'flaky' && attempt === 1) throw new Error('flaky');
          };
          let completions = 0;
          const questions: Promise<unknown>[] = [];
          const enough = new Promise<void>((resolve) => {
            const scheduler = h.startScheduler({
              concurrency: 3,
              maxAttempts: 2,
              retryBaseMs: 1,
              retryMaxMs: 2,
              pollMs: 5,
              handlers: { representation: dealFate, summary: dealFate },
            });
            const check = () => {
              if (w.stopAfter !== null && completions >= w.stopAfter) resolve();
            };
            const filters = allFilters();
            const completed = () => {
              completions++;
              // Ask about a filter now and then while tasks run: it is read (cold) and kept (hot)
              // amid changes, until the tiny budget drops it again.
              const asked = w.asked[completions % w.asked.length] ?? 0;
              questions.push(h.status.get({ workspaceId: 'default', ...filters[asked % filters.length] }));
              check();
            };
            scheduler.events.on('task:completed', completed);
            scheduler.events.on('task:failed', completed);
            check();
            void h.idle().then(resolve);
          });
          await enough;
          await h.scheduler!.stop({ deadlineMs: 0 });
          await Promise.all(questions);
          expect(violations).toEqual([]);
          await expectMatchesRawRows(h);

          // Counts survive a restart, and pruning finished rows changes none of them.
          const before = await snapshotAll(h);
          await h.close();
          const reopened = await createHarness({ storeUrl: location.url, statusEntries: w.statusEntries });
          try {
            expect(await snapshotAll(reopened)).toEqual(before);
            let pruned: number;
            do pruned = await reopened.store.pruneFinished(Number.MAX_SAFE_INTEGER, 7);
            while (pruned > 0);
            expect(await reopened.store.listTasks({ state: 'succeeded' })).toEqual([]);
            expect(await snapshotAll(reopened)).toEqual(before);
          } finally {
            await reopened.close();
          }
        } finally {
          await h.close().catch(() => {});
          await location.dispose();
        }
      }),
      { numRuns: 25 },
    );
  });
});
