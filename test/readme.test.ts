/**
 * The README as a newcomer uses it: its curl example runs as written against a real server, its
 * length stays a newcomer's, and every link in it and in `docs/` points at a file of this
 * repository (nothing outside it: what users rely on is written here).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The first fenced block of `language` after `heading`. */
function block(markdown: string, heading: string, language: string): string {
  const start = markdown.indexOf(heading);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const open = markdown.indexOf(`\`\`\`${language}\n`, start) + language.length + 4;
  return markdown.slice(open, markdown.indexOf('```', open));
}

describe('the README', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ config: { demoTaskMs: 1 } });
  });
  afterAll(() => server.close());

  it('its curl example runs as written: the session, the messages, the counts, then a wait that ends idle', async () => {
    const script = block(README, '## From the command line', 'sh').replace(
      'URL=http://127.0.0.1:4000/graphql',
      `URL=${server.url}`,
    );
    // Not execFileSync: the server runs in this process and must answer meanwhile.
    const { stdout: out } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], {
      timeout: 30_000,
    });
    const lines = out.split('\n');
    expect(lines[0]).toBe('{"data":{"upsertSession":{"id":"chat"}}}');
    expect(lines[1]).toBe('{"data":{"addMessages":{"enqueuedTasks":3}}}');
    expect(JSON.parse(lines[2] ?? '')).toMatchObject({ data: { deriverStatus: { failedWorkUnits: 0 } } });
    // The event stream ends with the idle status, then `complete`.
    const events = [...out.matchAll(/^data: (\{.*\})$/gm)].map((m) => JSON.parse(m[1] ?? ''));
    expect(events.at(-1)).toEqual({
      data: { deriverStatus: { pendingWorkUnits: 0, completedWorkUnits: 3 } },
    });
    expect(out.trimEnd()).toMatch(/event: complete\ndata:$/);
  });

  it('its Python example runs as written against a real server (the client from clients/python)', async () => {
    const script = block(README, '## Clients', 'python').replace('http://127.0.0.1:4000/graphql', server.url);
    const { stdout } = await promisify(execFile)('python3', ['-c', script], {
      timeout: 30_000,
      env: { ...process.env, PYTHONPATH: join(ROOT, 'clients/python/src'), PYTHONDONTWRITEBYTECODE: '1' },
    });
    // alice's own unit and bob observing her: 2 tasks, finished.
    expect(stdout).toMatch(
      /^DeriverStatus\(total_work_units=2, completed_work_units=2, in_progress_work_units=0, pending_work_units=0,/,
    );
  });

  it('its TypeScript example runs as written from the clone (`deriver-live/client`, built by npm ci)', async () => {
    const script = block(README, '## Clients', 'ts').replace('http://127.0.0.1:4000/graphql', server.url);
    // `npm ci` builds the package (`prepare`): the clone imports its own client by name.
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script],
      {
        cwd: ROOT,
        timeout: 60_000,
      },
    );
    expect(stderr).toBe('');
    expect(stdout).toBe('');
  });

  it("the Python client's README example runs as written, its watch ending when its time is up", async () => {
    const readme = readFileSync(join(ROOT, 'clients/python/README.md'), 'utf8');
    const script = (/```python\n([\s\S]*?)```/.exec(readme)?.[1] ?? '')
      .replace('http://localhost:4000/graphql', server.url)
      .replace('timeout=30', 'timeout=1'); // the watch watches for a second here, not thirty
    const { stdout } = await promisify(execFile)('python3', ['-c', script], {
      timeout: 60_000,
      env: { ...process.env, PYTHONPATH: join(ROOT, 'clients/python/src'), PYTHONDONTWRITEBYTECODE: '1' },
    });
    // `print(done.completed, done.failed)`, then the watch's line(s): pending and running, all done.
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('1 0'); // bob's task observing alice's message, none failed
    expect(lines.at(-1)).toBe('0 0');
  });

  it('stays short enough to read first (at most about 250 lines); the rest is in docs/', () => {
    expect(README.split('\n').length).toBeLessThanOrEqual(260);
  });

  it('links only to files of this repository, and every one exists', () => {
    const pages = [
      'README.md',
      ...readdirSync(join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ];
    for (const page of pages) {
      const text = readFileSync(join(ROOT, page), 'utf8');
      for (const [, target = ''] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^https?:\/\/127\.0\.0\.1/.test(target)) continue;
        expect(target, `${page} links outside the repository`).not.toMatch(
          /^(https?:|\.\.\/\.\.\/|\.\.\/shared)/,
        );
        const file = resolve(dirname(join(ROOT, page)), target.split('#')[0] ?? '');
        expect(existsSync(file), `${page} -> ${target}`).toBe(true);
        expect(file.startsWith(ROOT), `${page} -> ${target}`).toBe(true);
      }
    }
  });
});
