/**
 * Every benchmark, one table: runs each `npm run bench:*` on a short shape (`--full`: the shapes
 * docs/benchmarks.md publishes), reads the JSON lines each prints, and makes one row per figure:
 * its target, the baseline measured in the same run, the ratio the target applies to, met or not.
 *
 *   npm run bench                            (short shape, about 5 minutes here)
 *   npm run bench -- --full                  (the published shape: 10M units, 10k subscribers)
 *   npm run bench -- --only scheduler-pg,history   (with --write: those runs replace their saved
 *                                                 results; the table says they are newer)
 *   npm run bench -- --write                 (also bench/results.json and docs/benchmarks.md)
 *   npm run bench -- --from bench/results.json --write   (the docs' table from saved results)
 *   npm run bench -- --runs 3 --write        (every benchmark three times, in turn: each figure a
 *                                            range, met in how many of the runs)
 *
 * Output: one JSON line per figure, the last the summary (every figure, the shape, Node, the
 * machine); the table on stderr. `--write` keeps the results (bench/results.json) and rewrites the
 * table between the `bench:table` markers of docs/benchmarks.md from them, so the docs' figures
 * are those of the code that made them. A figure whose run failed or was not run is "not measured".
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { report, round } from './util.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = `${ROOT}bench/results.json`;
const DOCS = `${ROOT}docs/benchmarks.md`;

type Line = Record<string, unknown>;
type Env = Record<string, string>;

interface Run {
  readonly id: string;
  readonly script: string;
  readonly args?: readonly string[];
  readonly short: Env;
  readonly full: Env;
}

/** Each benchmark run once; figures read their lines. */
const RUNS: readonly Run[] = [
  { id: 'scheduler-sqlite', script: 'bench:scheduler', short: { TASKS: '30000', UNITS: '300' }, full: {} },
  {
    id: 'scheduler-pg',
    script: 'bench:scheduler',
    args: ['--store', 'postgres'],
    short: { TASKS: '30000', UNITS: '300' },
    full: {},
  },
  { id: 'history', script: 'bench:history', short: { SIZES: '100000', QUERIES: '300' }, full: {} },
  {
    id: 'live',
    script: 'bench:live',
    short: { SUBSCRIBERS: '1000', LATENCY_ROUNDS: '60', PHASES: 'latency,fanout,idle,messages,load' },
    full: {},
  },
  { id: 'memory', script: 'bench:memory', short: { SUBSCRIBERS: '1000' }, full: { SUBSCRIBERS: '10000' } },
  { id: 'ingest', script: 'bench:ingest', short: { INGEST_SECONDS: '3' }, full: {} },
  { id: 'llm', script: 'bench:llm', short: { SESSIONS: '3', MESSAGES: '100' }, full: {} },
  { id: 'claims-sqlite', script: 'bench:claims', short: { WAITING: '5000' }, full: {} },
  {
    id: 'claims-pg',
    script: 'bench:claims',
    args: ['--store', 'postgres'],
    short: { WAITING: '5000' },
    full: {},
  },
  { id: 'honcho', script: 'bench:honcho', short: { SIZES: '100000', ROUNDS: '5' }, full: {} },
];

/** What a figure reads: the value, the same-run baseline if it has one, and what the target tests. */
interface Measured {
  readonly value: number;
  readonly baseline?: number;
  /** value / baseline when there is a baseline, else the value. */
  readonly compared: number;
}

interface Figure {
  readonly figure: string;
  readonly run: string;
  readonly target: string;
  /** What the baseline is, when the figure has one. */
  readonly baselineIs?: string;
  readonly measure: (lines: readonly Line[]) => Measured | null;
  readonly met: (compared: number) => boolean;
}

const last = (lines: readonly Line[]): Line => lines.at(-1) ?? {};
const phase = (lines: readonly Line[], name: string): Line => lines.find((l) => l.phase === name) ?? {};
/** `object[key1][key2]...` when every step is an object, else undefined. */
function at(object: unknown, ...keys: string[]): unknown {
  let current = object;
  for (const key of keys) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
const num = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? value : null;
/** The last key of a record (the largest size, as the benchmarks list them). */
const largest = (record: unknown): string | undefined =>
  record && typeof record === 'object' ? Object.keys(record).at(-1) : undefined;

const plain = (value: number | null): Measured | null => (value === null ? null : { value, compared: value });
function ratioOf(value: number | null, baseline: number | null): Measured | null {
  if (value === null || baseline === null || baseline <= 0) return null; // no baseline measured
  return { value, baseline, compared: value / baseline };
}
const atMost = (limit: number) => (n: number) => n <= limit;
const atLeast = (limit: number) => (n: number) => n >= limit;

function historyFigures(store: 'sqlite' | 'postgres', name: string): Figure[] {
  const size = (lines: readonly Line[]) => {
    const sizes = at(last(lines), 'p99Ms', store);
    return largest(sizes);
  };
  return [
    {
      figure: `\`npm start\` to /readyz, ${name}, empty store (s)`,
      run: 'history',
      target: '<= 1 s',
      measure: (lines) => plain(num(at(last(lines), 'startSeconds', store, 'empty'))),
      met: atMost(1),
    },
    {
      figure: `\`npm start\` to /readyz, ${name}, largest store (s)`,
      run: 'history',
      target: '<= 1 s',
      measure: (lines) => plain(num(at(last(lines), 'startSeconds', store, size(lines) ?? ''))),
      met: atMost(1),
    },
    {
      figure: `warm session status p99 over HTTP, ${name}, largest store (ms)`,
      run: 'history',
      target: '<= 1.2x floor',
      baselineIs: '`{ __typename }` p99',
      measure: (lines) => {
        const s = size(lines) ?? '';
        return ratioOf(
          num(at(last(lines), 'p99Ms', store, s, 'session', 'warm')),
          num(at(last(lines), 'floorP99Ms', store, s)),
        );
      },
      met: atMost(1.2),
    },
    {
      figure: `cold session status p99 over HTTP, ${name}, largest store (ms)`,
      run: 'history',
      target: '<= 5 ms',
      measure: (lines) => plain(num(at(last(lines), 'p99Ms', store, size(lines) ?? '', 'session', 'cold'))),
      met: atMost(5),
    },
    {
      figure: `cold workspace status p99 over HTTP, ${name}, largest store (ms)`,
      run: 'history',
      target: '<= 50 ms',
      measure: (lines) => plain(num(at(last(lines), 'p99Ms', store, size(lines) ?? '', 'workspace', 'cold'))),
      met: atMost(50),
    },
  ];
}

const FIGURES: readonly Figure[] = [
  {
    figure: 'PostgreSQL scheduler, tasks/s (per-unit order)',
    run: 'scheduler-pg',
    target: '>= 2.0x',
    baselineIs: 'tuned graphile-worker, jobs/s',
    measure: (lines) => ratioOf(num(last(lines).tasksPerSecond), num(last(lines).graphileWorkerPerSecond)),
    met: atLeast(2),
  },
  {
    figure: 'SQLite scheduler, tasks/s',
    run: 'scheduler-sqlite',
    target: '>= 1.0x',
    baselineIs: 'single-commit ceiling, commits/s',
    measure: (lines) => ratioOf(num(last(lines).tasksPerSecond), num(last(lines).ceilingPerSecond)),
    met: atLeast(1),
  },
  {
    figure: 'worker CPU per task, SQLite (ms)',
    run: 'scheduler-sqlite',
    target: '<= 0.025 ms',
    measure: (lines) => plain(num(phase(lines, 'run').cpuMsPerTask)),
    met: atMost(0.025),
  },
  {
    figure: 'worker CPU per task, PostgreSQL (ms)',
    run: 'scheduler-pg',
    target: '<= 0.025 ms',
    measure: (lines) => plain(num(phase(lines, 'run').cpuMsPerTask)),
    met: atMost(0.025),
  },
  ...historyFigures('sqlite', 'SQLite'),
  ...historyFigures('postgres', 'PostgreSQL'),
  {
    figure: 'idle detection (`waitForIdle`) p99 (ms)',
    run: 'live',
    target: '<= 3 ms',
    measure: (lines) => plain(num(last(lines).idleMs)),
    met: atMost(3),
  },
  {
    figure: 'waiting for a message p99, busy queue (ms)',
    run: 'live',
    target: '<= 5 ms',
    measure: (lines) => plain(num(last(lines).messageWaitP99Ms)),
    met: atMost(5),
  },
  {
    figure: 'push latency p99, largest size, protocol clients (ms)',
    run: 'live',
    target: '<= 1.5x raw ws',
    baselineIs: 'raw `ws` twin p99',
    measure: (lines) => {
      const size = largest(last(lines).protocolP99Ms) ?? '';
      return ratioOf(num(at(last(lines), 'protocolP99Ms', size)), num(at(last(lines), 'rawP99Ms', size)));
    },
    met: atMost(1.5),
  },
  {
    figure: 'fan-out to one filter, events/s ratio',
    run: 'live',
    target: '>= 0.8x raw ws',
    measure: (lines) => plain(num(last(lines).fanoutRatio)),
    met: atLeast(0.8),
  },
  {
    figure: 'memory per idle subscription, live after GC (KB)',
    run: 'memory',
    target: '<= 1.15x raw ws',
    baselineIs: 'an idle raw `ws` socket in its broadcast group, a fresh server process each, KB',
    measure: (lines) => ratioOf(num(last(lines).kbPerSubscription), num(last(lines).kbPerRawSocket)),
    met: atMost(1.15),
  },
  {
    figure: '`deriverStatus` query, req/s',
    run: 'ingest',
    target: '>= 0.95x floor',
    baselineIs: '`{ __typename }` req/s',
    measure: (lines) => ratioOf(num(last(lines).statusPerSecond), num(last(lines).floorPerSecond)),
    met: atLeast(0.95),
  },
  {
    figure: '`addMessages` of 1 message, req/s',
    run: 'ingest',
    target: '>= 0.7x floor',
    baselineIs: '`{ __typename }` req/s',
    measure: (lines) => ratioOf(num(last(lines).addMessage1PerSecond), num(last(lines).floorPerSecond)),
    met: atLeast(0.7),
  },
  {
    figure: '`addMessages` of 100 messages, messages/s',
    run: 'ingest',
    target: '>= 60,000',
    measure: (lines) => plain(num(last(lines).batchedMessagesPerSecond)),
    met: atLeast(60_000),
  },
  {
    figure: 'LLM deriver, handler calls per task, batching on',
    run: 'llm',
    target: '<= 0.2',
    measure: (lines) => plain(num(last(lines).callsPerTask)),
    met: atMost(0.2),
  },
  {
    figure: "LLM deriver, provider 429s with the limit set to the provider's",
    run: 'llm',
    target: '0',
    measure: (lines) => plain(num(last(lines).provider429s)),
    met: (n) => n === 0,
  },
  {
    figure: 'claim with units waiting, SQLite (ms)',
    run: 'claims-sqlite',
    target: '<= 1.5x empty',
    baselineIs: 'the same claim on an empty store',
    measure: (lines) => ratioOf(num(last(lines).waitingClaimMs), num(last(lines).emptyClaimMs)),
    met: atMost(1.5),
  },
  {
    figure: 'claim with units waiting, PostgreSQL (ms)',
    run: 'claims-pg',
    target: '<= 1.5x empty',
    baselineIs: 'the same claim on an empty store',
    measure: (lines) => ratioOf(num(last(lines).waitingClaimMs), num(last(lines).emptyClaimMs)),
    met: atMost(1.5),
  },
  {
    figure: 'attached Honcho: warm status p99 over HTTP (ms)',
    run: 'honcho',
    target: '<= 1.2x floor',
    baselineIs: '`{ __typename }` p99',
    measure: (lines) => ratioOf(num(last(lines).warmP99Ms), num(last(lines).httpFloorP99Ms)),
    met: atMost(1.2),
  },
  {
    figure: 'attached Honcho: cold status p99 (ms)',
    run: 'honcho',
    target: '<= 50 ms',
    measure: (lines) => plain(num(last(lines).coldP99Ms)),
    met: atMost(50),
  },
  {
    figure: "attached Honcho: pushed status p99, Honcho's commit to event (ms)",
    run: 'honcho',
    target: '<= 10 ms',
    measure: (lines) => plain(num(last(lines).pushedP99Ms)),
    met: atMost(10),
  },
];

/** Runs one benchmark as its documented command; resolves with its JSON lines (empty if it failed). */
function runBench(run: Run, full: boolean): Promise<{ lines: Line[]; ok: boolean; seconds: number }> {
  const started = performance.now();
  const args = ['run', '--silent', run.script, ...(run.args ? ['--', ...run.args] : [])];
  const child = spawn('npm', args, {
    cwd: ROOT,
    env: { ...process.env, ...(full ? run.full : run.short) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    text += chunk;
  });
  return new Promise((resolve) => {
    child.on('close', (code) => {
      const lines = text
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Line];
          } catch {
            return [];
          }
        });
      resolve({ lines, ok: code === 0, seconds: round((performance.now() - started) / 1000, 1) });
    });
  });
}

/** The smallest and largest of a figure's runs (equal for one run), or null when none measured. */
type Range = readonly [number, number] | null;

interface Row {
  readonly figure: string;
  readonly command: string;
  readonly target: string;
  readonly value: Range;
  readonly baselineIs: string | null;
  readonly baseline: Range;
  readonly ratio: Range;
  /** Runs that measured the figure, and how many of them met its target. */
  readonly measured: number;
  readonly metIn: number;
  /** true when every run that measured it met the target, false when one did not, else null. */
  readonly met: boolean | null;
}

function commandOf(run: Run | undefined): string {
  if (!run) return '';
  return `npm run ${run.script}${run.args ? ` -- ${run.args.join(' ')}` : ''}`;
}

function rangeOf(values: readonly number[], digits: number): Range {
  if (values.length === 0) return null;
  return [round(Math.min(...values), digits), round(Math.max(...values), digits)];
}

/** One row per figure over every run of its benchmark (`runs[i]`: the lines of run i, by run id). */
function rowsOf(runs: readonly Record<string, Line[]>[]): Row[] {
  return FIGURES.map((figure): Row => {
    const measured = runs.flatMap((results) => {
      const lines = results[figure.run];
      const m = lines && lines.length > 0 ? figure.measure(lines) : null;
      return m !== null && Number.isFinite(m.compared) ? [m] : [];
    });
    const metIn = measured.filter((m) => figure.met(m.compared)).length;
    const baselines = measured.flatMap((m) => (m.baseline === undefined ? [] : [m.baseline]));
    return {
      figure: figure.figure,
      command: commandOf(RUNS.find((r) => r.id === figure.run)),
      target: figure.target,
      value: rangeOf(
        measured.map((m) => m.value),
        4,
      ),
      baselineIs: figure.baselineIs ?? null,
      baseline: rangeOf(baselines, 4),
      ratio:
        baselines.length > 0
          ? rangeOf(
              measured.map((m) => m.compared),
              2,
            )
          : null,
      measured: measured.length,
      metIn,
      met: measured.length === 0 ? null : metIn === measured.length,
    };
  });
}

const number = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 4 });
const cell = (range: Range) =>
  range === null ? '–' : range[0] === range[1] ? number(range[0]) : `${number(range[0])}–${number(range[1])}`;
function verdict(row: Row): string {
  if (row.met === null) return 'not measured';
  if (row.measured === 1) return row.met ? 'met' : '**not met**';
  return row.met
    ? `met (${row.measured} of ${row.measured})`
    : `**not met** (met in ${row.metIn} of ${row.measured})`;
}

function markdownTable(rows: readonly Row[]): string {
  const lines = [
    '| figure | target | this build | same-run baseline | ratio | |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.figure} | ${r.target} | ${cell(r.value)} | ${r.baselineIs ? `${cell(r.baseline)} (${r.baselineIs})` : ''} | ${cell(r.ratio)} | ${verdict(r)} |`,
    ),
  ];
  return lines.join('\n');
}

interface Saved {
  readonly shape: 'short' | 'full';
  readonly node: string;
  readonly cpus: string;
  readonly date: string;
  readonly seconds: Record<string, number>;
  /** Each run's lines by run id: one record per repetition (`--runs`), in the order they ran. */
  readonly runs: Record<string, Line[]>[];
  /** Runs measured again later with `--only ... --write` (the rest is from `date`), by run id. */
  readonly rerun?: Record<string, string>;
}

function writeDocs(saved: Saved, rows: readonly Row[]): void {
  const docs = readFileSync(DOCS, 'utf8');
  const start = '<!-- bench:table:start -->';
  const end = '<!-- bench:table:end -->';
  const from = docs.indexOf(start);
  const to = docs.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${DOCS} has no ${start} ... ${end} markers`);
  const reruns = Object.entries(saved.rerun ?? {})
    .map(([id, date]) => `${id} on ${date.slice(0, 10)}`)
    .join(', ');
  const repeats = saved.runs.length;
  const flags = `${saved.shape === 'full' ? ' --full' : ''}${repeats > 1 ? ` --runs ${repeats}` : ''}`;
  const made = `Made by \`npm run bench --${flags} --write\` on ${saved.date.slice(0, 10)}${reruns ? ` (measured again with \`--only\`: ${reruns})` : ''}: Node ${saved.node}, ${saved.cpus}, ${saved.shape} shape (\`bench/results.json\` holds every line). Each run's commands are in \`bench/all.ts\`; ${repeats > 1 ? `the benchmarks ran ${repeats} times in turn: a cell is the range over its benchmark's runs, and a target is met when every one of them met it` : 'one run, so each figure moves between runs (see the sections below for ranges)'}.`;
  const table = `${start}\n\n${made}\n\n${markdownTable(rows)}\n\n${end}`;
  writeFileSync(DOCS, docs.slice(0, from) + table + docs.slice(to + end.length));
}

const { values: flags } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    write: { type: 'boolean', default: false },
    from: { type: 'string' },
    runs: { type: 'string', default: '1' },
  },
});
const repeats = Number(flags.runs);
if (!Number.isInteger(repeats) || repeats < 1) {
  console.error(`--runs: a whole number of runs, 1 or more (got ${flags.runs})`);
  process.exit(2);
}

/** Saved results as this script reads them; a file of one run (before `--runs`) holds `results`. */
function readSaved(path: string): Saved {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Saved & { results?: Record<string, Line[]> };
  const { results, ...rest } = raw;
  return { ...rest, runs: raw.runs ?? (results ? [results] : []) };
}

let saved: Saved;
if (flags.from) {
  saved = readSaved(flags.from);
} else {
  const only = flags.only ? new Set(flags.only.split(',')) : null;
  const unknown = [...(only ?? [])].filter((id) => !RUNS.some((r) => r.id === id));
  if (unknown.length > 0) {
    console.error(`--only: no run named ${unknown.join(', ')} (runs: ${RUNS.map((r) => r.id).join(', ')})`);
    process.exit(2);
  }
  // Some runs written: the others keep their saved results, and the table says which are newer.
  // A shape other than the saved one is refused before anything runs.
  const previous = only && flags.write ? readSaved(RESULTS) : null;
  if (previous && previous.shape !== (flags.full ? 'full' : 'short')) {
    console.error(`--only --write: bench/results.json holds the ${previous.shape} shape; run the same shape`);
    process.exit(2);
  }
  // Repetitions in turn (every benchmark once, then again), so that a slow spell of the machine
  // lands on one repetition of several benchmarks rather than on every run of one.
  const runs: Record<string, Line[]>[] = [];
  const seconds: Record<string, number> = {};
  for (let repetition = 1; repetition <= repeats; repetition++) {
    const results: Record<string, Line[]> = {};
    for (const run of RUNS) {
      if (only && !only.has(run.id)) continue;
      const outcome = await runBench(run, flags.full);
      results[run.id] = outcome.ok ? outcome.lines : [];
      seconds[run.id] = round((seconds[run.id] ?? 0) + outcome.seconds, 1);
      report({
        bench: 'all',
        run: run.id,
        repetition,
        ok: outcome.ok,
        seconds: outcome.seconds,
        summary: last(outcome.lines),
      });
    }
    runs.push(results);
  }
  const model = cpus()[0]?.model ?? 'unknown CPU';
  saved = previous
    ? {
        ...previous,
        seconds: { ...previous.seconds, ...seconds },
        // The runs measured now replace theirs in every repetition; the others keep what they had.
        runs: Array.from({ length: Math.max(previous.runs.length, runs.length) }, (_, i) => {
          const kept = Object.fromEntries(
            Object.entries(previous.runs[i] ?? {}).filter(([id]) => !only?.has(id)),
          );
          return { ...kept, ...runs[i] };
        }),
        rerun: {
          ...previous.rerun,
          ...Object.fromEntries([...(only ?? [])].map((id) => [id, new Date().toISOString()])),
        },
      }
    : {
        shape: flags.full ? 'full' : 'short',
        node: process.version,
        cpus: `${availableParallelism()} cores (${model.trim()})`,
        date: new Date().toISOString(),
        seconds,
        runs,
      };
}

const rows = rowsOf(saved.runs);
for (const row of rows) report({ bench: 'all', ...row });
console.error(`\n${markdownTable(rows)}\n`);
if (flags.write) {
  if (!flags.from) writeFileSync(RESULTS, `${JSON.stringify(saved, null, 2)}\n`);
  writeDocs(saved, rows);
  // In the project's format (biome aligns the table), so that the lint check passes as written.
  spawnSync('npx', ['biome', 'format', '--write', DOCS, ...(flags.from ? [] : [RESULTS])], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  console.error(`wrote ${flags.from ? '' : 'bench/results.json and '}the table of docs/benchmarks.md`);
}
report({
  bench: 'all',
  shape: saved.shape,
  node: saved.node,
  cpus: saved.cpus,
  met: rows.filter((r) => r.met === true).length,
  notMet: rows.filter((r) => r.met === false).length,
  notMeasured: rows.filter((r) => r.met === null).length,
  figures: rows,
});
