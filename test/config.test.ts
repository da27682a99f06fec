import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/server/config.ts';
import { tempDir } from './helpers.ts';
import { listeningUrl, printed } from './support/processes.ts';

const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));

describe('configuration', () => {
  it('applies the SPEC defaults', () => {
    expect(loadConfig({})).toMatchObject({
      port: 4000,
      host: '127.0.0.1',
      databaseUrl: 'file:./data/deriver-live.db',
      workerConcurrency: 8,
      demoTaskMs: 250,
      coalesceMs: 100,
    });
    expect(loadConfig({ WORKER_CONCURRENCY: '0', PORT: '0' })).toMatchObject({
      workerConcurrency: 0,
      port: 0,
    });
  });

  it('turns auth on with a long enough secret, and introspection off with it unless asked for', () => {
    const secret = 'x'.repeat(32);
    expect(loadConfig({})).toMatchObject({ authJwtSecret: null, introspection: true, allowedOrigins: [] });
    expect(loadConfig({ AUTH_JWT_SECRET: secret })).toMatchObject({
      authJwtSecret: secret,
      introspection: false,
    });
    expect(loadConfig({ AUTH_JWT_SECRET: secret, INTROSPECTION: 'true' }).introspection).toBe(true);
    expect(loadConfig({ CORS_ORIGINS: ' https://a.example , http://localhost:5173' }).allowedOrigins).toEqual(
      ['https://a.example', 'http://localhost:5173'],
    );
    expect(loadConfig({ MAX_CONNECTIONS_PER_ADDRESS: '0' }).limits.maxConnectionsPerAddress).toBe(0);
  });

  it.each([
    [{ PORT: 'abc' }, /^PORT must be a whole number from 0 to 65535 \(got "abc"\)$/],
    [{ PORT: '70000' }, /^PORT must be/],
    [{ WORKER_CONCURRENCY: '-1' }, /^WORKER_CONCURRENCY must be a whole number/],
    [{ DEMO_TASK_MS: '1.5' }, /^DEMO_TASK_MS must be a whole number/],
    [
      { DATABASE_URL: 'mysql://x' },
      /^DATABASE_URL must be file:PATH or postgres:\/\/\.\.\. \(got "mysql:\/\/x"\)$/,
    ],
    [{ REDIS_URL: 'redis://127.0.0.1:6379' }, /^REDIS_URL: Deriver Live needs no Redis/],
    [{ AUTH_JWT_SECRET: 'secret' }, /^AUTH_JWT_SECRET must be at least 32 bytes long/],
    [
      { CORS_ORIGINS: 'https://ok.example,not an origin' },
      /^CORS_ORIGINS must be .* \(got "not an origin"\)$/,
    ],
    [{ CORS_ORIGINS: '*' }, /^CORS_ORIGINS must be/],
    [{ INTROSPECTION: 'yes' }, /^INTROSPECTION must be true or false/],
    [{ SERVE_API: 'no' }, /^SERVE_API must be true or false/],
    [
      { SERVE_API: 'false', WORKER_CONCURRENCY: '0' },
      /^SERVE_API=false with WORKER_CONCURRENCY=0 would do nothing/,
    ],
    [{ MAX_BODY_BYTES: '10' }, /^MAX_BODY_BYTES must be a whole number from 1024/],
    [{ MUTATIONS_PER_SECOND: '-5' }, /^MUTATIONS_PER_SECOND must be a whole number/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of/],
  ])('rejects %o with one line naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('stops `npm start` with exit code 1 and that one line', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { ...process.env, PORT: 'not-a-port' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      'deriver-live: invalid configuration: PORT must be a whole number from 0 to 65535 (got "not-a-port")',
    ]);
  });
});

describe('batches, rate limits and concurrency per task type', () => {
  it('reads them, with Honcho-like defaults for a bare on', () => {
    const config = loadConfig({
      REPRESENTATION_BATCH: 'on',
      SUMMARY_BATCH: 'tokens=2000, tasks=4 wait=500ms',
      REPRESENTATION_RATE_LIMIT: 'requests=500 tokens=200000 per=1m',
      SUMMARY_CONCURRENCY: '1',
    });
    expect(config.taskTypes).toEqual({
      batches: {
        representation: { maxTokens: 512, maxTasks: 50, maxWaitMs: 1_800_000 },
        summary: { maxTokens: 2000, maxTasks: 4, maxWaitMs: 500 },
      },
      limits: {
        representation: {
          rateLimit: { requests: 500, tokens: 200_000, intervalMs: 60_000 },
          concurrency: undefined,
        },
        summary: { rateLimit: undefined, concurrency: 1 },
      },
    });
    expect(loadConfig({}).taskTypes).toEqual({ batches: {}, limits: {} });
  });

  it('refuses a bad value with one line naming the variable', () => {
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(refused({ REPRESENTATION_BATCH: 'tokens=lots' })).toBe(
      'REPRESENTATION_BATCH: tokens must be a whole number of at least 1 (got "lots")',
    );
    expect(refused({ SUMMARY_BATCH: 'size=3' })).toBe(
      'SUMMARY_BATCH must be key=value pairs with keys tokens, tasks, wait (got "size=3" in "size=3")',
    );
    expect(refused({ REPRESENTATION_RATE_LIMIT: 'per=1m' })).toBe(
      'REPRESENTATION_RATE_LIMIT needs requests=N, tokens=N or both (got "per=1m")',
    );
    expect(refused({ REPRESENTATION_RATE_LIMIT: 'requests=5 per=soon' })).toBe(
      'REPRESENTATION_RATE_LIMIT: per must be a duration like 500ms, 30s, 30m or 1h (got "soon")',
    );
    expect(refused({ SUMMARY_CONCURRENCY: '0' })).toBe(
      'SUMMARY_CONCURRENCY must be a whole number of at least 1 (got "0")',
    );
  });
});

describe('npm start', () => {
  async function start(env: Record<string, string>) {
    const temp = tempDir();
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: {
        ...process.env,
        PORT: '0',
        DATABASE_URL: `file:${temp.path('start.db')}`,
        LOG_LEVEL: 'silent',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = await listeningUrl(child);
    return { child, exit, url, remove: temp.remove };
  }

  it('serves, then shuts down gracefully on SIGTERM; a second signal exits at once', async () => {
    const first = await start({});
    const health = await fetch(first.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{deriverStatus{totalWorkUnits}}' }),
    });
    expect(await health.json()).toEqual({ data: { deriverStatus: { totalWorkUnits: 0 } } });
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    first.remove();

    // A task that would run for a minute: the first signal waits for it, the second does not.
    const second = await start({ DEMO_TASK_MS: '60000', LOG_LEVEL: 'info' });
    const post = async (query: string) =>
      (
        await fetch(second.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query }),
        })
      ).json();
    await post('mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}');
    await post('mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:"x"}]){enqueuedTasks}}');
    // The task is running (an SSE subscription waits for it, no sleep) ...
    const running = await fetch(
      `${second.url}?query=${encodeURIComponent('subscription{deriverStatus{inProgressWorkUnits}}')}`,
      { headers: { accept: 'text/event-stream' } },
    );
    const events = running.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (let seen = ''; !seen.includes('"inProgressWorkUnits":1'); ) seen += (await events.read()).value;
    await events.cancel();
    // ... the first signal has been taken (the server says so), then the second.
    const draining = printed(second.child, /shutting down gracefully/);
    second.child.kill('SIGTERM');
    await draining;
    second.child.kill('SIGTERM');
    expect(await second.exit).toBe(1);
    second.remove();
  });
});
