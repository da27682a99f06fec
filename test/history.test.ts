/**
 * History of any size, every instance exact through crashes (SPEC 12):
 * - a worker process SIGKILLed right after a commit: another instance's status and its `untilIdle`
 *   subscriber still end exact (the change travelled inside the transaction);
 * - start-up on a store holding a million finished work units reads none of them: the server
 *   process reads no more of the database file than on an empty store (Linux `/proc/PID/io`),
 *   and a status is then answered from the store's indexed sums.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { fillHistory, UNITS_PER_SESSION, WORKSPACES } from '../bench/history-fill.ts';
import type { StatusView } from '../src/live/status-view.ts';
import { type App, startApp } from '../src/server/app.ts';
import { loadConfig } from '../src/server/config.ts';
import { recount, sendMessages, tempDir } from './helpers.ts';
import { listeningUrl } from './support/processes.ts';
import { POSTGRES } from './support/stores.ts';

const KILLER = fileURLToPath(new URL('./fixtures/kill-after-commit.ts', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
}

async function apiOnly(databaseUrl: string, workerConcurrency = 0): Promise<App> {
  const app = await startApp({
    ...loadConfig({}),
    port: 0,
    databaseUrl,
    workerConcurrency,
    logLevel: 'silent',
  });
  cleanups.push(() => app.close({ deadlineMs: 0 }));
  return app;
}

describe('a worker SIGKILLed right after its commit (postgres)', () => {
  it("leaves no instance stale: another instance's status and untilIdle subscriber end exact", async () => {
    const location = await POSTGRES.fresh();
    cleanups.push(location.dispose);
    const a = await apiOnly(location.url);
    await a.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    for (let s = 0; s < 4; s++) {
      await a.deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: `p${s}` }] });
      await sendMessages(a.deriver, { sessionId: `s${s}`, peerId: `p${s}`, count: 6 });
    }
    const all = { workspaceId: 'default' };
    // Watched on A from the start: its counts move only by what A hears.
    const views: StatusView[] = [];
    const stream = await a.live.subscribe(all, { untilIdle: true, windowMs: 0 });
    const ended = (async () => {
      for await (const view of stream) views.push(view);
    })();

    // K finishes tasks and dies right after its second such commit: no code of K runs after it.
    const killer = spawn(process.execPath, ['--import', 'tsx', KILLER, location.url, '2'], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    cleanups.push(() => killer.kill('SIGKILL'));
    expect(await exited(killer)).toBe('SIGKILL');
    const afterKill = await a.status.get(all);
    expect(afterKill.completedWorkUnits).toBeGreaterThan(0); // K's last commit reached A ...
    expect(afterKill).toEqual(recount(await a.store.listTasks())); // ... and so did everything else

    // Another worker finishes (K's leases expire first): the subscriber on A completes, exact.
    const finisher = await apiOnly(location.url, 2);
    await ended;
    const last = views.at(-1)?.counts;
    expect(last).toMatchObject({ totalWorkUnits: 24, completedWorkUnits: 24, inProgressWorkUnits: 0 });
    expect(last).toEqual(recount(await finisher.store.listTasks()));
    expect(await a.status.get(all)).toEqual(last);
  });
});

describe('start-up on a million finished work units', () => {
  /** Starts `npm start`'s server on `databaseUrl`; resolves once /readyz answers 200. */
  async function startServer(databaseUrl: string) {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { ...process.env, PORT: '0', DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => child.kill('SIGKILL'));
    const url = await listeningUrl(child);
    expect((await fetch(url.replace(/\/graphql$/, '/readyz'))).status).toBe(200);
    /** Bytes the process has read with read(2) and friends so far (files and sockets). */
    const bytesRead = () => Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${child.pid}/io`, 'utf8'))?.[1]);
    return { child, url, bytesRead };
  }

  it('reads none of them (no more of the file than on an empty store), then answers from indexed sums', {
    timeout: 300_000,
  }, async () => {
    const temp = tempDir();
    cleanups.push(temp.remove);
    const empty = await startServer(`file:${temp.path('empty.db')}`);
    const baseline = empty.bytesRead();
    empty.child.kill('SIGTERM');
    await exited(empty.child);

    const units = 1_000_000;
    const sessions = await fillHistory(`file:${temp.path('history.db')}`, { units });
    const fileBytes = statSync(temp.path('history.db')).size;
    const full = await startServer(`file:${temp.path('history.db')}`);
    const read = full.bytesRead() - baseline;
    // Reading the unit rows would be most of the file (well over a hundred MB); start-up reads
    // the schema and a few pages: allow 1% of the file (the two starts also differ a little in
    // what Node reads of its own).
    expect(fileBytes).toBeGreaterThan(100 * 2 ** 20);
    expect(read, `start-up read ${read} bytes more than on an empty store`).toBeLessThan(fileBytes / 100);

    // A whole workspace, cold, from the indexed sums: its sessions' units, 5 tasks each.
    const perWorkspace = Math.ceil(sessions / WORKSPACES);
    const response = await fetch(full.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: '{ deriverStatus(workspaceId: "w0") { completedWorkUnits sessions { sessionId } } }',
      }),
    });
    const { data } = (await response.json()) as {
      data: { deriverStatus: { completedWorkUnits: number; sessions: unknown[] } };
    };
    expect(data.deriverStatus.sessions).toHaveLength(perWorkspace);
    expect(data.deriverStatus.completedWorkUnits).toBe(perWorkspace * UNITS_PER_SESSION * 5);
  });
});
