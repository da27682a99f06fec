/**
 * `WorkUnit.waitingFor` through the GraphQL API of a real server: a unit behind its running task,
 * one with no free worker, one backing off, one rate limited, and batches filling with their
 * figures, each read the way a user reads them.
 */
import { afterEach, expect, it } from 'vitest';
import { deferred } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

interface UnitRow {
  taskType: string;
  sessionId: string;
  pendingTasks: number;
  retryAt: string | null;
  waitingFor: {
    reason: string;
    until: string | null;
    tokens: number | null;
    targetTokens: number | null;
    tasks: number | null;
    targetTasks: number | null;
  } | null;
}

async function gql<T>(query: string): Promise<T> {
  const result = await server!.http<T>(query);
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data as T;
}

async function units(): Promise<Map<string, UnitRow>> {
  const data = await gql<{ workUnits: { nodes: UnitRow[] } }>(`{
    workUnits(first: 100) { nodes { taskType sessionId pendingTasks retryAt
      waitingFor { reason until tokens targetTokens tasks targetTasks } } } }`);
  return new Map(data.workUnits.nodes.map((u) => [`${u.taskType}/${u.sessionId}`, u]));
}

it('says why each waiting unit waits, with its figures', async () => {
  const gate = deferred();
  const runningInA = deferred();
  const retryingInC = deferred();
  server = await startTestServer({
    config: {
      workerConcurrency: 1,
      taskTypes: {
        batches: { representation: { maxTasks: 10, maxTokens: 1_000, maxWaitMs: 3_600_000 } },
        limits: {},
      },
    },
    scheduler: { retryBaseMs: 600_000, retryMaxMs: 600_000 },
    handlers: {
      representation: () => {
        throw new Error('batches here never fill in this test');
      },
      summary: async ({ task }) => {
        if (task.key.sessionId === 'c') throw new Error('model unavailable');
        if (task.key.sessionId === 'a') {
          runningInA.resolve();
          await gate.promise;
        }
      },
    },
  });
  server.app.scheduler.events.on('task:retrying', ({ task }) => {
    if (task.key.sessionId === 'c') retryingInC.resolve();
  });
  await gql('mutation { upsertWorkspace(id: "default", settings: { messagesPerShortSummary: 1 }) { id } }');
  const send = async (session: string, contents: string[]) => {
    await gql(`mutation { upsertSession(id: "${session}", peers: [{ peerId: "alice" }]) { id } }`);
    const messages = contents.map((c) => `{ peerId: "alice", content: "${c}" }`).join(', ');
    await gql(`mutation { addMessages(sessionId: "${session}", messages: [${messages}]) { enqueuedTasks } }`);
  };
  // c: its summary fails and waits 10 minutes for a retry.
  await send('c', ['x'.repeat(40)]);
  await retryingInC.promise;
  // a: the only worker runs its first summary; its second waits behind it. b: ready, no worker.
  await send('a', ['x'.repeat(40), 'x'.repeat(80)]);
  await runningInA.promise;
  await send('b', ['x'.repeat(40)]);

  let seen = await units();
  expect(seen.get('summary/a')?.waitingFor?.reason).toBe('BEHIND_RUNNING_TASK');
  expect(seen.get('summary/b')?.waitingFor?.reason).toBe('NO_FREE_WORKER');
  const c = seen.get('summary/c');
  expect(c?.waitingFor).toMatchObject({ reason: 'BACKING_OFF', until: c?.retryAt });
  expect(Date.parse(c?.waitingFor?.until ?? '')).toBeGreaterThan(Date.now() + 60_000);
  // Representation units wait for their batches: 40 characters are 10 tokens.
  expect(seen.get('representation/a')?.waitingFor).toMatchObject({
    reason: 'BATCH_FILLING',
    tokens: 30,
    targetTokens: 1_000,
    tasks: 2,
    targetTasks: 10,
  });
  const filling = seen.get('representation/b')?.waitingFor;
  expect(filling).toMatchObject({ reason: 'BATCH_FILLING', tokens: 10, tasks: 1 });
  expect(Date.parse(filling?.until ?? '')).toBeGreaterThan(Date.now() + 3_000_000);

  // A provider's pause of the summary type: the ready unit now waits for the rate limit.
  await server.app.store.rateLimits.pause('summary', 120_000);
  seen = await units();
  const limited = seen.get('summary/b')?.waitingFor;
  expect(limited?.reason).toBe('RATE_LIMITED');
  expect(Date.parse(limited?.until ?? '')).toBeGreaterThan(Date.now() + 60_000);
  gate.resolve();
});
