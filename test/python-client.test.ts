/**
 * The Python client (`clients/python`): its unittest suite run against a real server with keys
 * (waits, watches, a timeout, a typo'd session, bad input, keys, asyncio), and its package metadata.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

const SECRET = 'a-jwt-secret-for-the-python-client-test';
const PACKAGE = fileURLToPath(new URL('../clients/python', import.meta.url));
const released = deferred<void>();
let server: TestServer;

/** Runs a command to its end; resolves with its exit code and everything it wrote. */
function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
  return new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

beforeAll(async () => {
  // A message saying "hold" keeps its task running until the suite ends (the timeout test).
  const handler: TaskHandler = async ({ task }) => {
    if (task.messages.some((m) => m.content === 'hold')) await released.promise;
  };
  server = await startTestServer({
    config: { authJwtSecret: SECRET, workerConcurrency: 4 },
    handlers: { representation: handler, summary: handler },
  });
});
afterAll(async () => {
  released.resolve();
  await server?.close();
});

it('passes its suite against a real server; the package declares what pip needs', async () => {
  // What pip reads (this machine has no PyPI and no `wheel`, so the install itself is not run here).
  const metadata = await run('python3', [
    '-c',
    'import json, sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb")); print(json.dumps(p["project"]))',
    `${PACKAGE}/pyproject.toml`,
  ]);
  expect(metadata.code).toBe(0);
  expect(JSON.parse(metadata.output)).toMatchObject({
    name: 'deriver-live',
    'requires-python': '>=3.10',
    dependencies: [],
  });
  expect(existsSync(`${PACKAGE}/src/deriver_live/py.typed`)).toBe(true);

  const keys = createKeyring({ secret: SECRET });
  const suite = await run('python3', ['-m', 'unittest', 'discover', '-v', '-s', `${PACKAGE}/tests`], {
    ...process.env,
    PYTHONPATH: `${PACKAGE}/src`,
    PYTHONDONTWRITEBYTECODE: '1',
    DERIVER_URL: server.url,
    DERIVER_TOKEN: await keys.mint({ kind: 'workspace', workspaceId: 'py' }, null),
    DERIVER_OTHER_TOKEN: await keys.mint({ kind: 'workspace', workspaceId: 'elsewhere' }, null),
  });
  if (suite.code !== 0) console.error(suite.output);
  expect(suite.code).toBe(0);
  expect(suite.output).toMatch(/Ran 10 tests/);
  expect(suite.output).toMatch(/\nOK\n/);
  expect(suite.output).not.toMatch(/skipped/);
});
