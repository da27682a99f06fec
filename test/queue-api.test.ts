/**
 * Inside the queue through the GraphQL API of a real server: paging, failed tasks, retry and
 * cancel, each change pushed to a graphql-ws subscriber, with throughput and time to idle.
 */
import { type Client, createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
let ws: Client | undefined;
afterEach(async () => {
  await ws?.dispose();
  await server?.close();
  ws = undefined;
  server = undefined;
});

const FIELDS =
  'totalWorkUnits pendingWorkUnits inProgressWorkUnits completedWorkUnits failedWorkUnits retryingWorkUnits throughputPerSecond estimatedSecondsToIdle';

interface Status {
  totalWorkUnits: number;
  pendingWorkUnits: number;
  inProgressWorkUnits: number;
  completedWorkUnits: number;
  failedWorkUnits: number;
  retryingWorkUnits: number;
  throughputPerSecond: number;
  estimatedSecondsToIdle: number | null;
}

/** Every event of a subscription, and a way to wait for one that fits. */
function watch(url: string) {
  ws = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, lazy: false });
  const events: Status[] = [];
  let waiters: { test: (s: Status) => boolean; resolve: (s: Status) => void }[] = [];
  ws.subscribe<{ deriverStatus: Status }>(
    { query: `subscription { deriverStatus(coalesceMs: 0) { ${FIELDS} } }` },
    {
      next: ({ data }) => {
        if (!data) return;
        events.push(data.deriverStatus);
        const status = data.deriverStatus;
        const ready = waiters.filter((w) => w.test(status));
        waiters = waiters.filter((w) => !ready.includes(w));
        for (const w of ready) w.resolve(status);
      },
      error: () => {},
      complete: () => {},
    },
  );
  return {
    events,
    until: (test: (s: Status) => boolean) =>
      new Promise<Status>((resolve) => {
        const seen = events.find(test);
        if (seen) return resolve(seen);
        waiters.push({ test, resolve });
      }),
  };
}

async function gql<T>(query: string): Promise<T> {
  const result = await server!.http<T>(query);
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data as T;
}

async function addMessages(sessionId: string, contents: string[]): Promise<void> {
  await gql(`mutation { upsertSession(id: "${sessionId}", peers: [{ peerId: "alice" }]) { id } }`);
  const messages = contents.map((c) => `{ peerId: "alice", content: "${c}" }`).join(', ');
  await gql(`mutation { addMessages(sessionId: "${sessionId}", messages: [${messages}]) { enqueuedTasks } }`);
}

describe('inside the queue over GraphQL', () => {
  it('lists failed tasks page by page, retries them, and pushes every change with throughput and time to idle', async () => {
    let broken = true;
    const handler: TaskHandler = ({ task }) => {
      if (broken && task.messages[0]?.content.includes('bad')) throw new PermanentTaskError('bad content');
    };
    server = await startTestServer({ handlers: { representation: handler, summary: handler } });
    await gql('mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }');
    const live = watch(server.url);
    await live.until(() => true);
    for (const s of ['a', 'b', 'c']) await addMessages(s, ['fine', 'bad one', 'fine again', 'bad two']);
    const settled = await live.until((s) => s.totalWorkUnits === 12 && s.completedWorkUnits === 12);
    expect(settled).toMatchObject({ failedWorkUnits: 6, estimatedSecondsToIdle: 0 });
    expect((await live.until((s) => s.throughputPerSecond > 0)).throughputPerSecond).toBeGreaterThan(0);

    type Page = {
      failedTasks: {
        nodes: { id: string; sessionId: string; seq: number; error: string }[];
        pageInfo: { endCursor: string; hasNextPage: boolean };
      };
    };
    const first = await gql<Page>(
      '{ failedTasks(first: 4) { nodes { id sessionId seq error } pageInfo { endCursor hasNextPage } } }',
    );
    expect(first.failedTasks.nodes.map((n) => `${n.sessionId}#${n.seq}:${n.error}`)).toEqual([
      'a#2:bad content',
      'a#4:bad content',
      'b#2:bad content',
      'b#4:bad content',
    ]);
    expect(first.failedTasks.pageInfo.hasNextPage).toBe(true);
    const second = await gql<Page>(
      `{ failedTasks(first: 4, after: "${first.failedTasks.pageInfo.endCursor}") { nodes { id sessionId seq error } pageInfo { endCursor hasNextPage } } }`,
    );
    expect(second.failedTasks.nodes.map((n) => `${n.sessionId}#${n.seq}`)).toEqual(['c#2', 'c#4']);
    expect(second.failedTasks.pageInfo.hasNextPage).toBe(false);

    const badCursor = await server.http('{ failedTasks(after: "bm9wZQ") { nodes { id } } }');
    expect(badCursor.errors?.[0]).toMatchObject({
      message: 'after: is not a cursor of failedTasks (use a pageInfo.endCursor it returned)',
      extensions: { code: 'BAD_USER_INPUT' },
    });

    broken = false;
    const one = first.failedTasks.nodes[0]?.id;
    expect(await gql(`mutation { retryFailedTasks(taskIds: ["${one}"]) { retriedTasks } }`)).toEqual({
      retryFailedTasks: { retriedTasks: 1 },
    });
    expect(await gql('mutation { retryFailedTasks(sessionId: "b") { retriedTasks } }')).toEqual({
      retryFailedTasks: { retriedTasks: 2 },
    });
    const after = await live.until((s) => s.completedWorkUnits === 12 && s.failedWorkUnits === 3);
    expect(after).toMatchObject({ totalWorkUnits: 12, pendingWorkUnits: 0, inProgressWorkUnits: 0 });
    const rows = await server.app.store.listTasks();
    expect(rows.filter((r) => r.state === 'failed')).toHaveLength(3);
    expect(rows).toHaveLength(12);
  });

  it('shows the units at work, cancels pending tasks (pushed at once), and counts a waiting retry', async () => {
    const holding = deferred();
    const release = deferred();
    const handler: TaskHandler = async ({ task, attempt }) => {
      if (task.messages[0]?.content === 'flaky' && attempt === 1) throw new Error('model overloaded');
      if (task.messages[0]?.content === 'hold') {
        holding.resolve();
        await release.promise;
      }
    };
    server = await startTestServer({
      handlers: { representation: handler, summary: handler },
      config: { workerConcurrency: 1 },
      scheduler: { claimBudget: 2, retryBaseMs: 60_000, retryMaxMs: 60_000 },
    });
    await gql('mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }');
    const live = watch(server.url);
    await addMessages('busy', ['hold', 'next', 'later', 'much later']);
    await holding.promise;
    await addMessages('flaky', ['flaky', 'after flaky']);
    await addMessages('waiting', ['w1', 'w2', 'w3']);

    type Units = {
      workUnits: {
        nodes: {
          sessionId: string;
          pendingTasks: number;
          runningTasks: number;
          running: { attempt: number; startedAt: string } | null;
          oldestPendingAgeSeconds: number | null;
        }[];
      };
    };
    const units = await gql<Units>(
      '{ workUnits { nodes { sessionId pendingTasks runningTasks running { attempt startedAt } oldestPendingAgeSeconds } } }',
    );
    expect(
      units.workUnits.nodes.map((u) => [u.sessionId, u.runningTasks, u.running?.attempt ?? null]),
    ).toEqual([
      ['busy', 1, 1],
      ['flaky', 0, null],
      ['waiting', 0, null],
    ]);
    expect(Date.parse(units.workUnits.nodes[0]?.running?.startedAt ?? '')).toBeGreaterThan(
      Date.now() - 60_000,
    );
    expect(units.workUnits.nodes[2]?.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(0);

    // The busy unit's worker holds its next task (claim budget 2); the rest is cancelled.
    const cancelled = await gql<{ cancelPendingTasks: { cancelledTasks: number; leftWithWorkers: number } }>(
      'mutation { cancelPendingTasks(sessionId: "busy") { cancelledTasks leftWithWorkers } }',
    );
    expect(cancelled.cancelPendingTasks).toEqual({ cancelledTasks: 2, leftWithWorkers: 1 });
    await live.until((s) => s.failedWorkUnits === 2 && s.pendingWorkUnits === 1 + 2 + 3);
    expect(
      await gql('mutation { cancelPendingTasks(sessionId: "waiting") { cancelledTasks leftWithWorkers } }'),
    ).toEqual({ cancelPendingTasks: { cancelledTasks: 3, leftWithWorkers: 0 } });
    await live.until((s) => s.failedWorkUnits === 5);

    release.resolve();
    // The flaky unit's head waits for its retry (a minute away): counted apart from tasks never started.
    const waiting = await live.until((s) => s.retryingWorkUnits === 1 && s.inProgressWorkUnits === 0);
    expect(waiting).toMatchObject({ pendingWorkUnits: 2, failedWorkUnits: 5, completedWorkUnits: 7 });
    const flaky = await gql<{
      workUnits: { nodes: { retryingTasks: number; retryAt: string; lastError: string }[] };
    }>('{ workUnits(sessionId: "flaky") { nodes { retryingTasks retryAt lastError } } }');
    expect(flaky.workUnits.nodes[0]).toMatchObject({ retryingTasks: 1, lastError: 'model overloaded' });
    expect(Date.parse(flaky.workUnits.nodes[0]?.retryAt ?? '')).toBeGreaterThan(Date.now() + 20_000);
  });

  it('refuses bad arguments with the argument named, and writes nothing', async () => {
    server = await startTestServer();
    const cases: [string, string][] = [
      ['{ workUnits(first: 0) { nodes { id } } }', 'first: must be at least 1'],
      ['{ failedTasks(first: 101) { nodes { id } } }', 'first: must be at most 100'],
      [
        'mutation { retryFailedTasks(taskIds: ["x1"]) { retriedTasks } }',
        'taskIds.0: must be a task id (digits, as failedTasks lists them)',
      ],
      [
        'mutation { retryFailedTasks(taskIds: []) { retriedTasks } }',
        'taskIds: must name at least one task (or leave it out to retry every failed task)',
      ],
      ['mutation { cancelPendingTasks(sessionId: "") { cancelledTasks } }', 'sessionId:'],
    ];
    for (const [query, message] of cases) {
      const result = await server.http(query);
      expect(result.errors?.[0]?.extensions?.code, query).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message, query).toContain(message);
    }
  });
});
