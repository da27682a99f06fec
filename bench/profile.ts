/**
 * Where a task's time goes, for `bench:scheduler -- --profile`: a probe started right before a
 * run phase and stopped when its last task is recorded, so the enqueue phase and the peers' set-up
 * stay out of it.
 * - CPU: the V8 sampling profiler of this process (`node:inspector`), its self time grouped by
 *   where the code lives (a file of `src/`, a package, Node's internals, the garbage collector,
 *   idle), in microseconds per task, and the heaviest functions.
 * - PostgreSQL's side (when given a server with `pg_stat_statements` preloaded): each statement's
 *   calls and execution time per task.
 */
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { round } from './util.ts';

/** Server settings that make `pg_stat_statements` available. */
export const STATEMENT_STATS = [
  'shared_preload_libraries=pg_stat_statements',
  'pg_stat_statements.track=all',
];

export interface Probe {
  start(): Promise<void>;
  /** Stops and returns the profile of what ran since `start`, per task. */
  stop(tasks: number): Promise<Record<string, unknown>>;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where a frame's code lives, for grouping. */
function placeOf(url: string, functionName: string): string {
  if (url === '') return `(${functionName.replace(/[()]/g, '') || 'native'})`;
  if (url.startsWith('node:')) return 'node internals';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const modules = path.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const [scope, name] = path.slice(modules + 14).split('/');
    return scope?.startsWith('@') ? `${scope}/${name}` : (scope ?? path);
  }
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
}

/** A CPU profile of this process and, when `databaseUrl` is given, PostgreSQL's statement times. */
export function probe(databaseUrl?: string): Probe {
  const session = new Session();
  let client: pg.Client | undefined;
  return {
    async start() {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 200 });
      if (databaseUrl) {
        client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
        await client.query('SELECT pg_stat_statements_reset()');
      }
      await session.post('Profiler.start');
    },
    async stop(tasks) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      const nodes = profile.nodes as ProfileNode[];
      const byId = new Map(nodes.map((node) => [node.id, node]));
      const selfUs = new Map<number, number>();
      const deltas = profile.timeDeltas ?? [];
      (profile.samples ?? []).forEach((id, i) => {
        selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i] ?? 0));
      });
      const places = new Map<string, number>();
      const functions = new Map<string, number>();
      for (const [id, us] of selfUs) {
        const frame = byId.get(id)?.callFrame;
        if (!frame) continue;
        const place = placeOf(frame.url, frame.functionName);
        places.set(place, (places.get(place) ?? 0) + us);
        const name = `${frame.functionName || '(anonymous)'} ${place}:${frame.lineNumber + 1}`;
        functions.set(name, (functions.get(name) ?? 0) + us);
      }
      const perTask = (entries: Map<string, number>, n: number) =>
        Object.fromEntries(
          [...entries]
            .sort((a, b) => b[1] - a[1])
            .slice(0, n)
            .map(([name, us]) => [name, round(us / tasks, 2)]),
        );
      const busy = [...places].filter(([place]) => place !== '(idle)').reduce((n, [, us]) => n + us, 0);
      const result: Record<string, unknown> = {
        cpuUsPerTask: round(busy / tasks, 2),
        cpuUsPerTaskByPlace: perTask(places, 16),
        cpuUsPerTaskByFunction: perTask(functions, 12),
      };
      if (client) {
        const statements = await client.query<{
          query: string;
          calls: string;
          ms: number;
          toplevel: boolean;
        }>(
          `SELECT query, calls, total_exec_time AS ms, toplevel FROM pg_stat_statements
           WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND query NOT LIKE '%pg_stat_statements%'
           ORDER BY total_exec_time DESC`,
        );
        // Statements run inside others (a trigger's) are listed, but counted once: in their caller.
        const toplevel = statements.rows.filter((row) => row.toplevel);
        const serverMs = toplevel.reduce((n, row) => n + row.ms, 0);
        result.serverUsPerTask = round((serverMs * 1000) / tasks, 2);
        result.statementsPerTask = round(toplevel.reduce((n, row) => n + Number(row.calls), 0) / tasks, 3);
        result.statements = statements.rows.slice(0, 12).map((row) => ({
          callsPerTask: round(Number(row.calls) / tasks, 3),
          usPerTask: round((row.ms * 1000) / tasks, 2),
          usPerCall: round((row.ms * 1000) / Number(row.calls), 1),
          ...(row.toplevel ? {} : { nested: true }),
          query: row.query.replace(/\s+/g, ' ').slice(0, 110),
        }));
        await client.end();
      }
      return result;
    },
  };
}
