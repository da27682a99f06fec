/**
 * The server's command line and process life: flags mirror the environment, `--help` lists every
 * setting with its default, a port in use is one line (no stack), and SIGTERM to `npm start`
 * reaches the server, which shuts down and exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import { keyCommand } from '../src/cli/key.ts';
import { flagOf, helpText, parseArgs, SETTINGS } from '../src/server/cli.ts';
import { CONFIG_VARIABLES, loadConfig } from '../src/server/config.ts';
import { tempDir } from './helpers.ts';
import { startTestServer } from './server-helpers.ts';
import { listeningUrl, printed } from './support/processes.ts';
import { POSTGRES, SQLITE } from './support/stores.ts';

const ROOT = new URL('..', import.meta.url).pathname;
let children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children = [];
});

function run(command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: 'pipe' });
  children.push(child);
  return child;
}

describe('flags and --help', () => {
  it('lists every setting the configuration reads, with defaults that are the real ones', () => {
    const listed = SETTINGS.map((s) => s.env);
    expect([...listed].sort()).toEqual(CONFIG_VARIABLES.filter((v) => v !== 'REDIS_URL').sort());
    const defaults = loadConfig({});
    const numeric: Record<string, number> = {
      PORT: defaults.port,
      WORKER_CONCURRENCY: defaults.workerConcurrency,
      TASK_TIMEOUT_MS: defaults.taskTimeoutMs,
      MAX_ATTEMPTS: defaults.maxAttempts,
      DEMO_TASK_MS: defaults.demoTaskMs,
      COALESCE_MS: defaults.coalesceMs,
      MAX_BODY_BYTES: defaults.limits.maxBodyBytes,
      MAX_INFLIGHT_BODY_BYTES: defaults.limits.maxInflightBodyBytes,
      WS_MAX_PAYLOAD_BYTES: defaults.limits.wsMaxPayloadBytes,
      MAX_SUBSCRIPTIONS_PER_SOCKET: defaults.limits.maxSubscriptionsPerSocket,
      MAX_CONNECTIONS_PER_ADDRESS: defaults.limits.maxConnectionsPerAddress,
      MUTATIONS_PER_SECOND: defaults.limits.mutationsPerSecond,
    };
    for (const [env, value] of Object.entries(numeric)) {
      expect(SETTINGS.find((s) => s.env === env)?.default, env).toBe(String(value));
    }
    for (const setting of SETTINGS) expect(helpText()).toContain(`${flagOf(setting.env)}, ${setting.env}`);
  });

  it('reads flags over the environment, both spellings, and refuses what it does not know', () => {
    expect(parseArgs(['--port', '5000', '--database-url=file:x.db'], { PORT: '4000', HOST: 'h' })).toEqual({
      kind: 'run',
      env: { PORT: '5000', HOST: 'h', DATABASE_URL: 'file:x.db' },
    });
    expect(parseArgs(['--help'], {})).toEqual({ kind: 'help' });
    expect(parseArgs(['--prot', '1'], {})).toEqual({
      kind: 'error',
      message: 'unknown argument "--prot" (see --help)',
    });
    expect(parseArgs(['--port'], {})).toEqual({
      kind: 'error',
      message: '--port needs a value (see --help)',
    });
  });
});

describe('the server process', () => {
  it('says a port in use in one line, with no stack', async () => {
    const temp = tempDir();
    try {
      const first = run('node', ['--import', 'tsx', 'src/server/main.ts', '--port', '0'], {
        DATABASE_URL: `file:${temp.path('a.db')}`,
        LOG_LEVEL: 'silent',
      });
      const port = new URL(await listeningUrl(first)).port;
      const second = run('node', ['--import', 'tsx', 'src/server/main.ts', '--port', port], {
        DATABASE_URL: `file:${temp.path('b.db')}`,
      });
      let stderr = '';
      second.stderr?.on('data', (chunk) => {
        stderr += chunk;
      });
      const [code] = await once(second, 'exit');
      expect(code).toBe(1);
      expect(stderr).toBe(
        `deriver-live: could not start: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`,
      );
    } finally {
      temp.remove();
    }
  });

  it('SIGTERM to `npm start` reaches the server: it shuts down gracefully, exits 0 and leaves nothing listening', async () => {
    const temp = tempDir();
    try {
      const npm = run('npm', ['start', '--silent', '--', '--port', '0'], {
        DATABASE_URL: `file:${temp.path('c.db')}`,
        LOG_LEVEL: 'info',
      });
      const url = await listeningUrl(npm);
      expect((await fetch(url.replace('/graphql', '/healthz'))).status).toBe(200);
      npm.kill('SIGTERM');
      const [code] = await once(npm, 'exit');
      expect(code).toBe(0);
      await expect
        .poll(() =>
          fetch(url.replace('/graphql', '/healthz')).then(
            () => 'up',
            () => 'down',
          ),
        )
        .toBe('down');
    } finally {
      temp.remove();
    }
  });
});

describe('the start-up banner', () => {
  it.each([
    {
      store: SQLITE,
      banner:
        'none: no worker is running (WORKER_CONCURRENCY=0, and a SQLite file serves this process only); tasks wait until it restarts with workers',
      warning: /no worker is running: with WORKER_CONCURRENCY=0 on a SQLite store/,
    },
    {
      store: POSTGRES,
      banner:
        'none in this process (WORKER_CONCURRENCY=0: an API-only instance); no worker process is running on this database now: tasks wait until one starts',
      warning:
        /no worker is running on this database: tasks wait until a process with WORKER_CONCURRENCY above 0 starts/,
    },
  ])(
    'an API-only instance on $store.name with no worker process anywhere says so (it named the demo handler)',
    async ({ store, banner, warning }) => {
      const location = await store.fresh();
      try {
        const child = run('npm', ['start', '--silent', '--', '--port', '0'], {
          DATABASE_URL: location.url,
          WORKER_CONCURRENCY: '0',
        });
        let out = '';
        child.stdout?.on('data', (chunk) => {
          out += chunk;
        });
        let err = '';
        child.stderr?.on('data', (chunk) => {
          err += chunk;
        });
        await printed(child, / {2}deriver: .*\n/);
        expect(out).toContain(`  deriver:   ${banner}\n`);
        expect(out).not.toMatch(/demo handler/);
        // The warning comes as a log line (stdout or stderr, as the logger is configured).
        await vi.waitFor(() => expect(out + err).toMatch(warning), { timeout: 50_000 });
        child.kill('SIGTERM');
        await once(child, 'exit');
      } finally {
        await location.dispose();
      }
    },
  );

  it("says when it created the embedded store's folder", async () => {
    const temp = tempDir();
    try {
      const child = run('npm', ['start', '--silent', '--', '--port', '0'], {
        DATABASE_URL: `file:${temp.path('new/folder/d.db')}`,
      });
      let out = '';
      child.stdout?.on('data', (chunk) => {
        out += chunk;
      });
      await printed(child, / {2}store: .*\n/);
      expect(out).toContain(
        `store:     file:${temp.path('new/folder/d.db')} (created the folder ${temp.path('new/folder')})`,
      );
      child.kill('SIGTERM');
      await once(child, 'exit');
    } finally {
      temp.remove();
    }
  });
});

describe('deriver-live key create', () => {
  const SECRET = 'cli-test-secret-0123456789-abcdefgh';
  const NOW = Date.UTC(2026, 0, 1);
  const mint = (args: string[], env: NodeJS.ProcessEnv = { AUTH_JWT_SECRET: SECRET }) =>
    keyCommand(['create', ...args], env, () => NOW);

  it.each([
    [['--admin'], { kind: 'admin' }],
    [['--workspace', 'acme'], { kind: 'workspace', workspaceId: 'acme' }],
    [['--workspace', 'acme', '--session', 's1'], { kind: 'session', workspaceId: 'acme', sessionId: 's1' }],
    [['--workspace', 'acme', '--peer', 'p1'], { kind: 'peer', workspaceId: 'acme', peerId: 'p1' }],
  ])('%o mints a key the server accepts for exactly that scope', async (args, scope) => {
    const result = await mint(args);
    expect(result.code).toBe(0);
    const principal = await createKeyring({ secret: SECRET, clock: () => NOW }).verify(result.stdout.trim());
    expect(principal).toEqual({ kind: 'key', scope, expiresAt: null });
    expect(result.stderr).toMatch(/^deriver-live key: a key for .*; it does not expire\n$/);
  });

  it('--expires-in sets the expiry; --json prints the key with its scope and expiry', async () => {
    const result = await mint(['--workspace', 'acme', '--expires-in', '12h', '--json']);
    const printed = JSON.parse(result.stdout) as { key: string; expiresAt: string };
    expect(printed.expiresAt).toBe(new Date(NOW + 12 * 3600_000).toISOString());
    const later = createKeyring({ secret: SECRET, clock: () => NOW + 13 * 3600_000 });
    await expect(later.verify(printed.key)).rejects.toThrow(/expired/);
  });

  it.each([
    [[], 'a key names a workspace (--workspace W), or is an admin key (--admin)'],
    [['--admin', '--workspace', 'w'], '--workspace: an admin key takes no --workspace, --session or --peer'],
    [
      ['--workspace', 'w', '--session', 's', '--peer', 'p'],
      '--peer: a key names a session or a peer, not both',
    ],
    [['--workspace', 'no spaces'], '--workspace: may contain only letters, digits, "_" and "-"'],
    [['--workspace', 'w', '--expires-in', 'soon'], '--expires-in must be a duration such as 90s'],
    [['--workspace'], 'needs a value'],
    [['--wrokspace', 'w'], 'unknown argument "--wrokspace"'],
  ])('%o is refused in one line naming the flag', async (args, message) => {
    const result = await mint(args);
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(message);
  });

  it('without AUTH_JWT_SECRET, or with a short one, it says what to set', async () => {
    expect((await mint(['--admin'], {})).stderr).toMatch(
      /AUTH_JWT_SECRET is not set: set it to the secret the server runs with/,
    );
    expect((await mint(['--admin'], { AUTH_JWT_SECRET: 'short' })).stderr).toMatch(/at least 32 bytes/);
  });

  it('runs from a clone as `npm run -s cli -- key create`, printing only the key on stdout', async () => {
    const child = run('npm', ['run', '-s', 'cli', '--', 'key', 'create', '--admin'], {
      AUTH_JWT_SECRET: SECRET,
    });
    let stdout = '';
    child.stdout?.on('data', (chunk) => {
      stdout += chunk;
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(await createKeyring({ secret: SECRET }).verify(stdout.trim())).toMatchObject({
      scope: { kind: 'admin' },
    });
  });
});

describe('npm run demo', () => {
  const SECRET = 'demo-test-secret-0123456789-abcdefgh';
  async function demo(args: string[]) {
    const child = run('npm', ['run', '-s', 'demo', '--', ...args], {});
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const [code] = await once(child, 'exit');
    return { code, stdout, stderr };
  }

  it('with no server: one line saying to start it, exit 1', async () => {
    const { code, stdout, stderr } = await demo(['--url', 'http://127.0.0.1:9/graphql']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^demo: could not reach the server at .*Start it with `npm start`/),
    ]);
  });

  it('with auth on: refused without a key (saying how to make one), runs to idle with one, and links its workspace', async () => {
    const server = await startTestServer({ config: { authJwtSecret: SECRET, demoTaskMs: 1 } });
    try {
      const refused = await demo(['--url', server.url]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/\(UNAUTHENTICATED\)\. Pass a key: npm run demo -- --token/);
      const key = (await keyCommand(['create', '--admin'], { AUTH_JWT_SECRET: SECRET })).stdout.trim();
      const { code, stdout } = await demo([
        '--url',
        server.url,
        '--token',
        key,
        '--workspace',
        'demo-test',
        '--sessions',
        '2',
        '--messages',
        '6',
      ]);
      expect(code).toBe(0);
      expect(stdout).toContain(`dashboard: ${server.url.replace(/\/graphql$/, '')}/?workspace=demo-test`);
      expect(stdout).toMatch(/idle after \d+ ms: \d+ tasks done, 0 failed/);
      expect((await server.app.status.get({ workspaceId: 'demo-test' })).pendingWorkUnits).toBe(0);
    } finally {
      await server.close();
    }
  }, 60_000);

  it('with --fail-rate, fails that share of messages once (Retry then succeeds); its progress never reads 100% early', async () => {
    const server = await startTestServer({ config: { demoTaskMs: 2 } });
    try {
      const { code, stdout } = await demo([
        '--url',
        server.url,
        '--workspace',
        'demo-fail',
        '--sessions',
        '2',
        '--messages',
        '12',
        '--fail-rate',
        '1',
      ]);
      expect(code).toBe(0);
      const idle = /idle after \d+ ms: (\d+) tasks done, (\d+) failed/.exec(stdout);
      expect(Number(idle?.[2])).toBeGreaterThan(0);
      const status = await server.app.status.get({ workspaceId: 'demo-fail' });
      expect(status.failedWorkUnits).toBe(Number(idle?.[2]));
      // A progress line says 100% only when nothing is left.
      for (const [, percent, completed, total] of stdout.matchAll(
        /^\s+(\d+)%\s+\d+\s+\d+\s+(\d+)\/(\d+)/gm,
      )) {
        if (percent === '100') expect(completed).toBe(total);
        else expect(Number(completed)).toBeLessThan(Number(total));
      }
      // Retrying the failed tasks runs them again, and they succeed (the demo fails a task once).
      const retried = await server.http<{ retryFailedTasks: { retriedTasks: number } }>(
        'mutation { retryFailedTasks(workspaceId: "demo-fail") { retriedTasks } }',
      );
      expect(retried.data?.retryFailedTasks.retriedTasks).toBe(status.failedWorkUnits);
      await expect
        .poll(async () => (await server.app.status.get({ workspaceId: 'demo-fail' })).failedWorkUnits)
        .toBe(0);
    } finally {
      await server.close();
    }
  }, 60_000);
});
