/**
 * Status query latency, in process, as the store grows: p50/p99 of `deriverStatus` counts at 10k,
 * 100k and 1M stored tasks over 10k sessions, on a durable SQLite file. Tasks are created the real
 * way (addMessages: two peers per session, one observing the other, summaries every 20). A filter's
 * first query reads the store's indexed sums (cold); later ones are answered from memory (hot); the
 * per-session breakdown is O(sessions in the answer) and is printed apart. `bench:history` measures
 * cold and warm queries apart, on stores of up to 10M work units.
 *
 *   npm run bench:status           (SESSIONS=10000 QUERIES=20000 to change the shape)
 */
import { createInProcessFeed } from '../src/feed/in-process-feed.ts';
import { createDeriver } from '../src/service/deriver.ts';
import { createStatusEngine, type StatusEngine } from '../src/status/status-engine.ts';
import type { StatusQuery } from '../src/status/status-filter.ts';
import { createSqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { benchDir, percentile, report, round } from './util.ts';

const SESSIONS = Number(process.env.SESSIONS ?? 10_000);
const QUERIES = Number(process.env.QUERIES ?? 20_000);
const PEERS = 1_000;
const LEVELS: [string, number][] = [
  ['10k', 10_000],
  ['100k', 100_000],
  ['1m', 1_000_000],
];

const dir = benchDir();
const store = createSqliteStore({ path: dir.path('status.db') });
const feed = createInProcessFeed(store.events);
const status = createStatusEngine({ store, feed });
const deriver = createDeriver({ store });
const peersOf = (s: number): [string, string] => [`p${s % PEERS}`, `p${(s * 7 + 1) % PEERS}`];

for (let s = 0; s < SESSIONS; s++) {
  const [a, b] = peersOf(s);
  await deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: a }, { peerId: b, observeOthers: a !== b }] });
}

/** Sends the same number of messages to every session until the store holds about `target` tasks. */
async function fillTo(target: number): Promise<void> {
  while ((await status.get({ workspaceId: 'default' })).totalWorkUnits < target) {
    const missing = target - (await status.get({ workspaceId: 'default' })).totalWorkUnits;
    const perSession = Math.max(1, Math.min(100, Math.round(missing / SESSIONS / 1.55)));
    for (let s = 0; s < SESSIONS; s++) {
      const [a, b] = peersOf(s);
      await deriver.addMessages({
        sessionId: `s${s}`,
        messages: Array.from({ length: perSession }, (_, i) => ({ peerId: i % 2 ? a : b, content: 'hello' })),
      });
    }
  }
}

function randomFilter(): StatusQuery {
  const s = Math.floor(Math.random() * SESSIONS);
  const [a, b] = peersOf(s);
  switch (Math.floor(Math.random() * 6)) {
    case 0:
      return { workspaceId: 'default' };
    case 1:
      return { workspaceId: 'default', sessionId: `s${s}` };
    case 2:
      return { workspaceId: 'default', observerId: b };
    case 3:
      return { workspaceId: 'default', senderId: a };
    case 4:
      return { workspaceId: 'default', observerId: b, senderId: a };
    default:
      return { workspaceId: 'default', sessionId: `s${s}`, observerId: a };
  }
}

async function measure(
  engine: StatusEngine,
  query: () => Promise<unknown>,
  count: number,
): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await query();
    samples.push(performance.now() - start);
  }
  void engine;
  samples.sort((x, y) => x - y);
  return { p50: round(percentile(samples, 50), 4), p99: round(percentile(samples, 99), 4) };
}

const p99: Record<string, number> = {};
try {
  for (const [label, target] of LEVELS) {
    const fillStart = performance.now();
    await fillTo(target);
    const tasks = (await status.get({ workspaceId: 'default' })).totalWorkUnits;
    const counts = await measure(status, () => status.get(randomFilter()), QUERIES);
    const peerBreakdown = await measure(
      status,
      () => status.sessions({ workspaceId: 'default', observerId: `p${Math.floor(Math.random() * PEERS)}` }),
      2_000,
    );
    const fullBreakdown = await measure(status, () => status.sessions({ workspaceId: 'default' }), 200);
    p99[label] = counts.p99;
    report({
      bench: 'status',
      level: label,
      tasks,
      sessions: SESSIONS,
      fillMs: round(performance.now() - fillStart, 0),
      countsMs: counts,
      peerSessionsBreakdownMs: peerBreakdown,
      allSessionsBreakdownMs: fullBreakdown,
    });
  }
  // Start-up reads nothing; a new engine's first answer for a workspace is one store read.
  const fresh = createStatusEngine({ store, feed });
  const coldStart = performance.now();
  await fresh.get({ workspaceId: 'default' });
  report({
    bench: 'status',
    phase: 'cold-workspace-after-start',
    ms: round(performance.now() - coldStart, 1),
  });
  fresh.close();
  report({ bench: 'status', p99Ms: p99 });
} finally {
  status.close();
  await store.close();
  dir.remove();
}
