import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/server/config.ts';

const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));

describe('configuration', () => {
  it('applies the SPEC defaults', () => {
    expect(loadConfig({})).toMatchObject({
      port: 4000,
      host: '127.0.0.1',
      databaseUrl: 'file:./data/deriver-live.db',
      databasePath: './data/deriver-live.db',
      workerConcurrency: 8,
      demoTaskMs: 250,
      coalesceMs: 100,
    });
    expect(loadConfig({ WORKER_CONCURRENCY: '0', PORT: '0' })).toMatchObject({
      workerConcurrency: 0,
      port: 0,
    });
  });

  it.each([
    [{ PORT: 'abc' }, /^PORT must be a whole number from 0 to 65535 \(got "abc"\)$/],
    [{ PORT: '70000' }, /^PORT must be/],
    [{ WORKER_CONCURRENCY: '-1' }, /^WORKER_CONCURRENCY must be a whole number/],
    [{ DEMO_TASK_MS: '1.5' }, /^DEMO_TASK_MS must be a whole number/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL must be file:PATH/],
    [{ DATABASE_URL: 'postgres://localhost/test' }, /^DATABASE_URL: PostgreSQL is not available/],
    [{ REDIS_URL: 'redis://127.0.0.1:6379' }, /^REDIS_URL: Redis fan-out is not available/],
    [{ AUTH_JWT_SECRET: 'secret' }, /^AUTH_JWT_SECRET: authentication is not available/],
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
