/**
 * Hostile load against `npm start`'s process (its own process, loopback): what a flood of huge
 * invalid bodies and of GraphiQL page loads costs the server and its other clients.
 *
 *   npm run bench:hostile
 *
 * Phases, each measuring the latency of a `deriverStatus` query sent every 10 ms meanwhile, and the
 * server's peak RSS (read from /proc):
 * - `idle`: nothing else (the baseline, same run);
 * - `garbage`: GARBAGE_CLIENTS (96) concurrent 24 MB bodies that are not JSON, resent as each ends;
 * - `graphiql`: 20 concurrent GraphiQL page loads, repeated, from one address.
 * Each phase lasts PHASE_MS (6000). Output: one JSON object per line, the last the summary.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { listeningUrl, rssMb as processRssMb } from '../test/support/processes.ts';
import { benchDir, percentile, report, round } from './util.ts';

const PHASE_MS = Number(process.env.PHASE_MS ?? 6_000);
const GARBAGE_CLIENTS = Number(process.env.GARBAGE_CLIENTS ?? 96);
const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));
if (process.env.FLOOD_URL) {
  process.stdout.write(JSON.stringify(await flood(process.env.FLOOD_URL, Number(process.env.FLOOD_UNTIL))));
  process.exit(0);
}

const dir = benchDir();

const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
  env: {
    ...process.env,
    PORT: '0',
    DATABASE_URL: `file:${dir.path('hostile.db')}`,
    LOG_LEVEL: 'warn',
    MAX_CONNECTIONS_PER_ADDRESS: '0',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await listeningUrl(child);

const rssMb = (): number => processRssMb(child.pid!);

const STATUS = JSON.stringify({ query: '{deriverStatus{totalWorkUnits pendingWorkUnits}}' });
async function statusLatencies(until: number): Promise<number[]> {
  const latencies: number[] = [];
  while (performance.now() < until) {
    const started = performance.now();
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: STATUS,
    });
    await response.text();
    latencies.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return latencies;
}

/** Runs `load` until the phase ends while sampling status latency and RSS. */
async function phase<T extends Record<string, number>>(name: string, load: (until: number) => Promise<T>) {
  const until = performance.now() + PHASE_MS;
  let peak = rssMb();
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb());
  }, 50);
  const [latencies, extra] = await Promise.all([statusLatencies(until), load(until)]);
  clearInterval(sampler);
  latencies.sort((a, b) => a - b);
  const record = {
    bench: 'hostile',
    phase: name,
    statusP50Ms: round(percentile(latencies, 50), 2),
    statusP99Ms: round(percentile(latencies, 99), 2),
    statusQueries: latencies.length,
    rssPeakMb: round(peak, 1),
    rssAfterMb: round(rssMb(), 1),
    ...extra,
  };
  report(record);
  return record;
}

/** The garbage flood runs in its own process (this file with FLOOD=url), not on the prober's loop. */
async function flood(target: string, until: number): Promise<Record<string, number>> {
  const garbage = Buffer.alloc(24 * 2 ** 20, 'x'.charCodeAt(0));
  garbage[0] = '{'.charCodeAt(0);
  const statuses: Record<string, number> = {};
  let bytesBack = 0;
  await Promise.all(
    Array.from({ length: GARBAGE_CLIENTS }, async () => {
      while (Date.now() < until) {
        try {
          const response = await fetch(target, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: garbage,
          });
          bytesBack += (await response.arrayBuffer()).byteLength;
          statuses[`http${response.status}`] = (statuses[`http${response.status}`] ?? 0) + 1;
        } catch {
          statuses.reset = (statuses.reset ?? 0) + 1; // the server answered early and closed
        }
      }
    }),
  );
  const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    garbageRequests: requests,
    bytesBackPerRequest: round(bytesBack / Math.max(1, requests), 1),
    ...statuses,
  };
}

const idle = await phase('idle', async () => ({}));
const flooded = await phase('garbage', async (until) => {
  const generator = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, FLOOD_URL: url, FLOOD_UNTIL: String(Date.now() + (until - performance.now())) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  generator.stdout?.on('data', (chunk) => {
    out += chunk;
  });
  await new Promise((resolve) => generator.once('exit', resolve));
  return JSON.parse(out) as Record<string, number>;
});
const graphiql = await phase('graphiql', async (until) => {
  let bytes = 0;
  let pages = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (performance.now() < until) {
        const response = await fetch(url, {
          headers: { accept: 'text/html', 'accept-encoding': 'identity' },
        });
        bytes += (await response.arrayBuffer()).byteLength;
        if (response.status === 200) pages++;
        else refused++;
      }
    }),
  );
  return { graphiqlPagesSent: pages, graphiqlRefused: refused, graphiqlMbSent: round(bytes / 2 ** 20, 1) };
});

child.kill('SIGTERM');
await new Promise((resolve) => child.once('exit', resolve));
dir.remove();
report({
  bench: 'hostile',
  statusP99MsIdle: idle.statusP99Ms,
  statusP99MsUnderGarbage: flooded.statusP99Ms,
  statusP99MsUnderGraphiql: graphiql.statusP99Ms,
  latencyRatioGarbage: round(flooded.statusP99Ms / idle.statusP99Ms, 2),
  rssBaselineMb: idle.rssPeakMb,
  rssPeakUnderGarbageMb: flooded.rssPeakMb,
  rssAfterGarbageMb: flooded.rssAfterMb,
  graphiqlMbSent: graphiql.graphiqlMbSent,
});
