/**
 * Storage faults on a real file: a read-only or full filesystem, a database file deleted while the
 * server runs, a database from a newer version, a corrupted file. In each case writes are refused
 * with `STORE_UNAVAILABLE` (HTTP 503), readiness says which part failed, and nothing acknowledged is
 * lost.
 *
 * The small filesystems are tmpfs mounts made inside a user and mount namespace of their own
 * (`unshare --user --map-root-user --mount`): the servers run there as real `npm start` processes,
 * an ordinary user can do it as well as root, and the mount vanishes with the processes.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { watchOutput } from './support/processes.ts';
import { send } from './transports.ts';

const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));
const SQLITE_STORE = fileURLToPath(new URL('../src/store/sqlite/sqlite-store.ts', import.meta.url));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Runs the shell `script` with a fresh tmpfs of `size` (e.g. `4m`) mounted at `$DIR`, in a user
 * and mount namespace of its own; `$NODE`, `$MAIN` (the `npm start` entry) and `$DB` (a file in
 * `$DIR`) are set, and so is `DATABASE_URL` for the servers it starts.
 */
function withSmallFilesystem(size: string, script: string, env: Record<string, string> = {}) {
  const temp = tempDir();
  const db = `${temp.dir}/deriver.db`;
  const child = spawn(
    'unshare',
    [
      '--user',
      '--map-root-user',
      '--mount',
      '--',
      'sh',
      '-c',
      `mount -t tmpfs -o size=${size} tmpfs "$DIR" || exit 97\n${script}`,
    ],
    {
      env: {
        ...process.env,
        ...env,
        DIR: temp.dir,
        DB: db,
        NODE: process.execPath,
        MAIN,
        SQLITE_STORE,
        DATABASE_URL: `file:${db}`,
        PORT: '0',
        LOG_LEVEL: 'silent',
        TSX_DISABLE_CACHE: '1', // tsx's cache folder belongs to the real user, not the namespace's root
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output = watchOutput(child);
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await output.exit;
    temp.remove();
  });
  return { child, ...output };
}

async function serverOn(dbPath: string): Promise<TestServer> {
  const server = await startTestServer({
    config: { databaseUrl: `file:${dbPath}`, workerConcurrency: 0 },
  });
  cleanups.push(() => server.close());
  return server;
}

const readiness = async (url: string) => {
  const response = await fetch(url.replace('/graphql', '/readyz'));
  return {
    status: response.status,
    body: (await response.json()) as { checks: { store: { ok: boolean; error?: string } } },
  };
};

const addMessage = (url: string, content = 'x') =>
  send('http', url, {
    query:
      'mutation($c:String!){addMessages(sessionId:"s",messages:[{peerId:"a",content:$c}]){messages{seq}}}',
    variables: { c: content },
  });

/** What a restarted server holds: messages of session `s`, and its pending representation tasks. */
const stored = async (url: string) => {
  const { data } = await send('http', url, {
    query:
      '{session(id:"s"){messageCount} workUnits(sessionId:"s",taskType:representation){nodes{pendingTasks}}}',
  });
  const { session, workUnits } = data as {
    session: { messageCount: number };
    workUnits: { nodes: { pendingTasks: number }[] };
  };
  const pendingTasks = workUnits.nodes.reduce((sum, unit) => sum + unit.pendingTasks, 0);
  return { messages: session.messageCount, representationTasks: pendingTasks };
};

describe('storage faults are visible', () => {
  it('a full disk: writes answer 503 STORE_UNAVAILABLE, and a restart finds exactly the acknowledged writes', async () => {
    // Two `npm start` servers in turn on the same 4 MB filesystem: the first is filled, then
    // stopped with SIGTERM; the second opens what the first left.
    const run = withSmallFilesystem(
      '4m',
      '"$NODE" --import tsx "$MAIN" & echo "server-pid $!"; wait $!; exec "$NODE" --import tsx "$MAIN"',
      { WORKER_CONCURRENCY: '0' },
    );
    const [, first = ''] = await run.nth(/listening on (\S+)/g, 1);
    await send('http', first, { query: 'mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}' });
    let acknowledged = 0;
    let refusal: Awaited<ReturnType<typeof addMessage>> | undefined;
    for (let i = 0; i < 200 && !refusal; i++) {
      const outcome = await addMessage(first, 'y'.repeat(60_000));
      if (outcome.code === 'OK') acknowledged++;
      else refusal = outcome;
    }
    expect(refusal).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503 });
    expect(refusal?.message).toMatch(/disk holding the database is full/);
    expect(acknowledged).toBeGreaterThan(10);
    // Restart on the same file: every acknowledged message is there, nothing half-written.
    process.kill(Number((await run.nth(/server-pid (\d+)/g, 1))[1]), 'SIGTERM');
    const [, second = ''] = await run.nth(/listening on (\S+)/g, 2);
    expect(await stored(second)).toEqual({
      messages: acknowledged,
      representationTasks: acknowledged,
    });
  });

  it('a database file deleted while running: writes are refused from then on, never silently lost', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const dbPath = temp.path('deriver.db');
    const { url } = await serverOn(dbPath);
    await send('http', url, { query: 'mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}' });
    expect((await addMessage(url)).code).toBe('OK');
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
    const refused = await addMessage(url);
    expect(refused).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503 });
    expect(refused.message).toMatch(/was removed while the server was running; restart the server/);
    const unready = await readiness(url);
    expect(unready.status).toBe(503);
    expect(unready.body.checks.store.error).toMatch(/removed/);
    expect((await addMessage(url)).code).toBe('STORE_UNAVAILABLE');
  });
});

describe('start-up refuses a database it cannot trust', () => {
  /** Runs `npm start`'s entry on `dbPath`; resolves with the exit code and stderr. */
  function start(dbPath: string): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { ...process.env, PORT: '0', DATABASE_URL: `file:${dbPath}`, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.stdout.on('data', () => child.kill('SIGKILL')); // it started: that is a failure here
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
  }

  it('a database on a read-only filesystem', async () => {
    const run = withSmallFilesystem(
      '16m',
      [
        '"$NODE" --import tsx --input-type=module -e "await (await import(process.env.SQLITE_STORE)).createSqliteStore({ path: process.env.DB }).close()" || exit 98',
        'mount -o remount,ro,size=16m -t tmpfs tmpfs "$DIR" || exit 99',
        'exec "$NODE" --import tsx "$MAIN"',
      ].join('\n'),
    );
    run.child.stdout?.on('data', () => run.child.kill('SIGKILL')); // it started: a failure here
    expect(await run.exit).toBe(1);
    expect(run.stderr().trim().split('\n')).toEqual([
      expect.stringMatching(/^deriver-live: could not start: .*read-only/),
    ]);
  });

  it('a database in a folder that cannot be created: names the read-only folder, not ENOENT mkdir', async () => {
    const run = withSmallFilesystem(
      '16m',
      [
        'mount -o remount,ro,size=16m -t tmpfs tmpfs "$DIR" || exit 99',
        // A database two folders down from the read-only one: neither exists.
        'DATABASE_URL="file:$DIR/sub/deeper/db.sqlite" exec "$NODE" --import tsx "$MAIN"',
      ].join('\n'),
    );
    run.child.stdout?.on('data', () => run.child.kill('SIGKILL'));
    expect(await run.exit).toBe(1);
    const [line] = run.stderr().trim().split('\n');
    expect(line).toMatch(
      /^deriver-live: could not start: cannot store: .* is on a read-only filesystem \(EROFS\)/,
    );
    expect(line).not.toMatch(/ENOENT|mkdir/);
  });

  it('a database file another process is serving (one process per SQLite file)', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const dbPath = temp.path('shared.db');
    await serverOn(dbPath);
    const { code, stderr } = await start(dbPath);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^deriver-live: could not start: the database file .* is in use by another process; run one process per SQLite file/,
      ),
    ]);
  });

  it('a database with a migration newer than the code', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const dbPath = temp.path('future.db');
    await createSqliteStore({ path: dbPath }).close();
    const db = new Database(dbPath);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run(
      '999-future.sql',
    );
    db.close();
    const { code, stderr } = await start(dbPath);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^deriver-live: could not start: the database is at schema version 999, newer than this code knows/,
      ),
    ]);
  });

  it('a database file with corrupted pages', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const dbPath = temp.path('corrupt.db');
    const store = createSqliteStore({ path: dbPath });
    await store.upsertSession({ workspaceId: 'default', id: 's' }, ['a'], () => [
      { peerId: 'a', observeMe: null, observeOthers: false },
    ]);
    await store.close();
    const fd = openSync(dbPath, 'r+');
    const size = statSync(dbPath).size;
    for (let offset = 4096; offset < size; offset += 4096)
      writeSync(fd, Buffer.alloc(64, 0xab), 0, 64, offset); // page headers
    closeSync(fd);
    const { code, stderr } = await start(dbPath);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/could not start: .*(integrity check|malformed|corrupt|not a database)/);
  });
});
