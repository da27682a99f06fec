import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VITEST = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));

it('a failing test fails the test command (the run exits non-zero, with PostgreSQL started)', async () => {
  const env = { ...process.env };
  delete env.TEST_DATABASE_URL; // as on a fresh machine: the suite starts its own PostgreSQL
  delete env.VITEST;
  const child = spawn(
    process.execPath,
    [VITEST, 'run', '--config', 'test/fixtures/failing/vitest.config.ts'],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(output).toContain('1 failed');
  expect(code, output).not.toBe(0);
});
