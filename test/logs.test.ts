/**
 * What the server logs: a client's mistake at info with its code and no document, server faults at
 * error; the progress line while work runs (a state machine on fake timers); readable lines on a
 * terminal and JSON otherwise.
 */
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { zeroCounters } from '../src/domain/counters.ts';
import { startApp } from '../src/server/app.ts';
import { loadConfig } from '../src/server/config.ts';
import { type ProgressLine, startProgressLog } from '../src/server/progress-log.ts';
import { tempDir } from './helpers.ts';
import { send } from './transports.ts';

const ROOT = new URL('..', import.meta.url).pathname;

afterEach(() => {
  vi.useRealTimers();
});

describe('progress line', () => {
  it('logs while work runs, once more when it goes idle, and nothing while idle', async () => {
    vi.useFakeTimers();
    let counters = zeroCounters();
    const lines: [ProgressLine, boolean][] = [];
    const stop = startProgressLog({
      read: async () => counters,
      write: (line, idle) => lines.push([line, idle]),
      intervalMs: 1000,
      clock: () => Date.now(),
    });
    await vi.advanceTimersByTimeAsync(3000);
    expect(lines).toEqual([]);
    counters = { ...zeroCounters(), pending: 90, running: 10 };
    await vi.advanceTimersByTimeAsync(1000);
    counters = { ...zeroCounters(), pending: 40, running: 10, completed: 50, failed: 1 };
    await vi.advanceTimersByTimeAsync(1000);
    counters = { ...zeroCounters(), completed: 100, failed: 1 };
    await vi.advanceTimersByTimeAsync(3000);
    stop();
    expect(lines).toEqual([
      [{ pending: 90, retrying: 0, running: 10, completed: 0, failed: 0, perSecond: 0 }, false],
      [{ pending: 40, retrying: 0, running: 10, completed: 50, failed: 1, perSecond: 50 }, false],
      [{ pending: 0, retrying: 0, running: 0, completed: 100, failed: 1, perSecond: 50 }, true],
    ]);
  });
});

describe('server logs', () => {
  it('logs a client mistake at info with its code and field, never the document or an error line', async () => {
    const temp = tempDir();
    const entries: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        entries.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const app = await startApp(
      { ...loadConfig({}), port: 0, databaseUrl: `file:${temp.path('l.db')}`, workerConcurrency: 0 },
      { logger: pino({ level: 'debug' }, stream) },
    );
    try {
      const secret = 'a private message nobody should find in the logs';
      const outcome = await send('http', app.url, {
        query: `mutation{addMessages(sessionId:"nope",messages:[{peerId:"alice",content:"${secret}"}]){enqueuedTasks}}`,
      });
      expect(outcome.code).toBe('NOT_FOUND');
      const clientErrors = entries.filter((e) => e.msg === 'client error');
      expect(clientErrors).toEqual([
        expect.objectContaining({ level: 30, code: 'NOT_FOUND', field: 'addMessages' }),
      ]);
      expect(JSON.stringify(entries)).not.toContain(secret);
      expect(entries.filter((e) => (e.level as number) >= 50)).toEqual([]);
    } finally {
      await app.close();
      temp.remove();
    }
  });

  it('writes readable lines on a terminal and JSON lines otherwise', () => {
    const temp = tempDir();
    try {
      const command = `node --import tsx src/server/main.ts --port 99999`;
      // A bad port stops start-up: enough to see how the first lines look, with and without a TTY.
      const plain = spawnSync('sh', ['-c', `${command} --log-level info`], { cwd: ROOT, encoding: 'utf8' });
      expect(plain.stderr).toBe(
        'deriver-live: invalid configuration: PORT must be a whole number from 0 to 65535 (got "99999")\n',
      );
      const env = { ...process.env, DATABASE_URL: `file:${temp.path('t.db')}`, PORT: '0', HOST: '0.0.0.0' };
      const run = `node --import tsx src/server/main.ts & sleep 4; kill -TERM $!; wait $!`;
      const tty = spawnSync('script', ['-qec', run, '/dev/null'], {
        cwd: ROOT,
        env,
        encoding: 'utf8',
        timeout: 30_000,
      });
      const warning = tty.stdout.split('\n').find((l) => l.includes('listening beyond this machine'));
      expect(warning).toMatch(/WARN/);
      expect(warning?.trim().startsWith('{')).toBe(false);
      const json = spawnSync('sh', ['-c', run], { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 });
      const line = json.stdout.split('\n').find((l) => l.includes('listening beyond this machine'));
      expect(JSON.parse(line ?? '')).toMatchObject({ level: 40, host: '0.0.0.0' });
    } finally {
      temp.remove();
    }
  });
});
