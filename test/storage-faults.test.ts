/**
 * Storage faults on a real file: a read-only or full filesystem (a small tmpfs the test mounts: it
 * needs root, as the test command's chromium install does), a database file deleted while the
 * server runs, a database from a newer version, a corrupted file. In each case writes are refused
 * with `STORE_UNAVAILABLE` (HTTP 503), readiness says which part failed, and nothing acknowledged is
 * lost.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh tmpfs of `size` (e.g. `4m`), unmounted after the test. */
function smallFilesystem(size: string): string {
  const temp = tempDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', temp.dir], { stdio: 'pipe' });
  } catch (error) {
    temp.remove();
    throw new Error(`these tests mount a small tmpfs and need root (mount failed: ${String(error)})`);
  }
  cleanups.push(() => {
    execFileSync('umount', ['-l', temp.dir]);
    temp.remove();
  });
  return temp.dir;
}

async function serverOn(dbPath: string): Promise<TestServer> {
  const server = await startTestServer({
    config: { databaseUrl: `file:${dbPath}`, workerConcurrency: 0 },
  });
  cleanups.push(() => server.close());
  return server;
}

const readiness = async (server: TestServer) => {
  const response = await fetch(server.url.replace('/graphql', '/readyz'));
  return {
    status: response.status,
    body: (await response.json()) as { checks: { store: { ok: boolean; error?: string } } },
  };
};

const addMessage = (server: TestServer, content = 'x') =>
  send('http', server.url, {
    query:
      'mutation($c:String!){addMessages(sessionId:"s",messages:[{peerId:"a",content:$c}]){messages{seq}}}',
    variables: { c: content },
  });

const messageCount = async (server: TestServer) =>
  (
    (await send('http', server.url, { query: '{session(id:"s"){messageCount}}' })).data as {
      session: { messageCount: number };
    }
  ).session.messageCount;

describe('storage faults are visible', () => {
  it('a full disk: writes answer 503 STORE_UNAVAILABLE, and a restart finds exactly the acknowledged writes', async () => {
    const dir = smallFilesystem('4m');
    const dbPath = `${dir}/deriver.db`;
    let server = await serverOn(dbPath);
    await send('http', server.url, { query: 'mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}' });
    let acknowledged = 0;
    let refusal: Awaited<ReturnType<typeof addMessage>> | undefined;
    for (let i = 0; i < 200 && !refusal; i++) {
      const outcome = await addMessage(server, 'y'.repeat(60_000));
      if (outcome.code === 'OK') acknowledged++;
      else refusal = outcome;
    }
    expect(refusal).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503 });
    expect(refusal?.message).toMatch(/disk holding the database is full/);
    expect(acknowledged).toBeGreaterThan(10);
    // Restart on the same file: every acknowledged message is there, nothing half-written.
    await server.close();
    cleanups.pop();
    server = await serverOn(dbPath);
    expect(await messageCount(server)).toBe(acknowledged);
    const tasks = await server.app.store.listTasks();
    expect(tasks.filter((t) => t.key.taskType === 'representation').length).toBe(acknowledged);
  });

  it('a database file deleted while running: writes are refused from then on, never silently lost', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const dbPath = temp.path('deriver.db');
    const server = await serverOn(dbPath);
    await send('http', server.url, { query: 'mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}' });
    expect((await addMessage(server)).code).toBe('OK');
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
    const refused = await addMessage(server);
    expect(refused).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503 });
    expect(refused.message).toMatch(/was removed while the server was running; restart the server/);
    const unready = await readiness(server);
    expect(unready.status).toBe(503);
    expect(unready.body.checks.store.error).toMatch(/removed/);
    expect((await addMessage(server)).code).toBe('STORE_UNAVAILABLE');
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
    const dir = smallFilesystem('16m');
    const dbPath = `${dir}/deriver.db`;
    await createSqliteStore({ path: dbPath }).close();
    execFileSync('mount', ['-o', 'remount,ro', dir]);
    const { code, stderr } = await start(dbPath);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^deriver-live: could not start: .*read-only/),
    ]);
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
