/**
 * What a claim costs while many units wait (batches filling): WAITING units of one task each, in
 * batch mode with a 30-minute fill time, so none is claimable; then the mean time of a claim that
 * finds nothing, beside the same claim on an empty store in the same run (the baseline).
 *
 *   npm run bench:claims                        (WAITING=20000 CLAIMS=200 change the shape)
 *   npm run bench:claims -- --store postgres    (TEST_DATABASE_URL, else an embedded server)
 *
 * Before the claim scans read only claimable units (`READINESS` in src/store/queue-plan.ts), a
 * claim walked past every waiting unit: with 20,000 of them 3.3 ms (SQLite) and 12-17 ms
 * (PostgreSQL) a claim, inside the write transaction.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDeriver } from '../src/service/deriver.ts';
import { openStore } from '../src/store/open-store.ts';
import type { Store } from '../src/store/store.ts';
import { startPostgres } from '../test/support/postgres-server.ts';
import { benchDir, report, round } from './util.ts';

const WAITING = Number(process.env.WAITING ?? 20_000);
const CLAIMS = Number(process.env.CLAIMS ?? 200);
const { values } = parseArgs({ options: { store: { type: 'string', default: 'sqlite' } } });
const dir = benchDir();
const BATCHES = { representation: { maxTasks: 50, maxTokens: 512, maxWaitMs: 30 * 60_000 } };

const postgres = values.store === 'postgres' ? await startPostgres() : null;

/** A fresh store location; `drop` removes it. */
function location(name: string): { url: string; drop: () => Promise<void> } {
  if (!postgres) return { url: `file:${dir.path(`${name}.db`)}`, drop: async () => {} };
  const schema = `bench_claims_${name}_${process.pid}`;
  const url = new URL(postgres.url);
  url.searchParams.set('schema', schema);
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    },
  };
}

/** Mean ms of a claim that finds nothing claimable. */
async function claimMs(store: Store): Promise<number> {
  const request = { owner: 'bench', leaseMs: 60_000, max: 8, prefetch: 4, maxInterruptions: 3 };
  for (let i = 0; i < 10; i++) await store.claim(request); // warm up
  const start = performance.now();
  for (let i = 0; i < CLAIMS; i++) {
    if ((await store.claim(request)).length > 0) throw new Error('a waiting unit was claimed');
  }
  return (performance.now() - start) / CLAIMS;
}

async function measure(name: string, waiting: number): Promise<number> {
  const where = location(name);
  const store = await openStore(where.url, { batches: BATCHES });
  const deriver = createDeriver({ store });
  await deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  const setupStart = performance.now();
  for (let i = 0; i < waiting; i++) {
    await deriver.upsertSession({ id: `s${i}`, peers: [{ peerId: 'a' }] });
    await deriver.addMessages({ sessionId: `s${i}`, messages: [{ peerId: 'a', content: 'x' }] });
  }
  const ms = await claimMs(store);
  report({
    bench: 'claims',
    store: values.store,
    waiting,
    setupMs: round(performance.now() - setupStart, 0),
    claimMs: round(ms),
  });
  await store.close();
  await where.drop();
  return ms;
}

const empty = await measure('empty', 0);
const loaded = await measure('waiting', WAITING);
report({
  bench: 'claims',
  store: values.store,
  waiting: WAITING,
  emptyClaimMs: round(empty),
  waitingClaimMs: round(loaded),
  ratio: round(loaded / empty, 2),
});
await postgres?.stop();
dir.remove();
