/**
 * What a client waits for in `npm run bench:live`, on the server live-client.ts drives: idle
 * detection (`untilIdle`) against polling loops (Honcho's SDK's and a 200 ms loop) on the same
 * workload, and waiting for one's own messages while other sessions keep the queue busy.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { addMessages, COUNTS, type Counts, command, gql, now, setupWorkspace, url } from './live-client.ts';
import { closeAll, connect } from './live-subscribers.ts';
import { percentile, report, round } from './util.ts';

/**
 * Rounds of each wait: enough that p99 is not simply the slowest round (a nearest-rank p99 of 50
 * samples is the 50th, the maximum; of 200 it is the 198th). The maximum is reported too.
 */
const IDLE_ROUNDS = Number(process.env.IDLE_ROUNDS ?? 200);
const MESSAGE_ROUNDS = Number(process.env.MESSAGE_ROUNDS ?? 200);

const statusQuery = `query($w:ID,$s:ID){deriverStatus(workspaceId:$w,sessionId:$s){${COUNTS}}}`;
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);

/** Idle detection: `untilIdle` against polling loops, same workload, same run. */
export async function idleDetection() {
  const ours: number[] = [];
  const honcho: number[] = [];
  /** Honcho's own 1.x SDK (`@honcho-ai/sdk` 1.5.0): `session.pollDeriverStatus()` over its v2 route. */
  const honchoSdk: number[] = [];
  const poll200: number[] = [];
  await command({ op: 'mode', mode: { kind: 'delay', ms: 30 } });
  const [idleClient] = await connect(1);
  const { Honcho } = await import('honcho-sdk-v1');
  const honchoV1 = new Honcho({ baseURL: new URL(url).origin, workspaceId: 'idle', maxRetries: 0 });
  const honchoRequests: number[] = [];
  const poll200Requests: number[] = [];

  async function pollUntilIdle(w: string, s: string, sleepFor: (c: Counts) => number, requests: number[]) {
    let n = 0;
    for (;;) {
      n++;
      const { deriverStatus } = await gql<{ deriverStatus: Counts }>(statusQuery, { w, s });
      if (deriverStatus.pendingWorkUnits === 0 && deriverStatus.inProgressWorkUnits === 0) {
        requests.push(n);
        return now();
      }
      await sleep(sleepFor(deriverStatus));
    }
  }
  function waitForIdle(w: string, s: string): Promise<{ detectedAt: number; completedAt: number }> {
    return new Promise((resolve) => {
      let last: { changedAt: number } | undefined;
      idleClient!.subscribe<{ deriverStatus: Counts }>(
        {
          query: `subscription($w:ID,$s:ID){deriverStatus(workspaceId:$w,sessionId:$s,untilIdle:true,coalesceMs:0){${COUNTS}}}`,
          variables: { w, s },
        },
        {
          next: (result) => {
            last = result.extensions as { changedAt: number };
          },
          error: (error) => console.error(error),
          complete: () => resolve({ detectedAt: now(), completedAt: last?.changedAt ?? Number.NaN }),
        },
      );
    });
  }
  // The polling loops sleep a second or more, so they share only the first rounds.
  const SHARED_ROUNDS = Math.min(5, IDLE_ROUNDS);
  for (let r = 0; r < IDLE_ROUNDS; r++) {
    const session = `idle${r}`;
    await gql(
      'mutation($s:ID!){upsertSession(workspaceId:"idle",id:$s,peers:[{peerId:"a"},{peerId:"b",observeOthers:true},{peerId:"c",observeOthers:true}]){id}}',
      { s: session },
    );
    await gql(
      'mutation($s:ID!){addMessages(workspaceId:"idle",sessionId:$s,messages:[{peerId:"a",content:"hi"}]){enqueuedTasks}}',
      { s: session },
    );
    const shared = r < SHARED_ROUNDS;
    const [mine, h, p, sdk] = await Promise.all([
      waitForIdle('idle', session),
      shared
        ? pollUntilIdle(
            'idle',
            session,
            (c) => Math.max(1000, (c.pendingWorkUnits + c.inProgressWorkUnits) * 1000),
            honchoRequests,
          )
        : null,
      shared ? pollUntilIdle('idle', session, () => 200, poll200Requests) : null,
      shared
        ? honchoV1
            .session(session)
            .then((s) => s.pollDeriverStatus())
            .then(() => now())
        : null,
    ]);
    ours.push(mine.detectedAt - mine.completedAt);
    if (h !== null) honcho.push(h - mine.completedAt);
    if (p !== null) poll200.push(p - mine.completedAt);
    if (sdk !== null) honchoSdk.push(sdk - mine.completedAt);
  }
  await closeAll([idleClient!]);
  const sortedOurs = [...ours].sort((a, b) => a - b);
  const idleMs = round(percentile(sortedOurs, 99), 2);
  report({
    bench: 'live',
    phase: 'idle-detection',
    workload: '3 tasks of 30 ms per round',
    rounds: ours.length,
    waitForIdle: {
      p50Ms: round(percentile(sortedOurs, 50), 2),
      p99Ms: idleMs,
      maxMs: round(sortedOurs.at(-1) ?? Number.NaN, 2),
      requestsPerRound: 1,
    },
    honchoPoll: {
      meanMs: round(mean(honcho), 1),
      maxMs: round(Math.max(...honcho), 1),
      requestsPerRound: mean(honchoRequests),
    },
    honchoSdkPoll: {
      sdk: '@honcho-ai/sdk 1.5.0 session.pollDeriverStatus() over /v2',
      meanMs: round(mean(honchoSdk), 1),
      maxMs: round(Math.max(...honchoSdk), 1),
    },
    poll200ms: {
      meanMs: round(mean(poll200), 1),
      maxMs: round(Math.max(...poll200), 1),
      requestsPerRound: mean(poll200Requests),
    },
  });
  return {
    idleMs,
    honchoPollIdleMs: round(mean(honcho), 1),
    honchoSdkPollIdleMs: round(mean(honchoSdk), 1),
    poll200IdleMs: round(mean(poll200), 1),
  };
}

/** Waiting for one's own messages while other sessions keep the queue busy. */
export async function messageWait() {
  await command({ op: 'mode', mode: { kind: 'delay', ms: 30 } });
  const [waiter] = await connect(1);
  await setupWorkspace('msg', ['busy']);
  // One session's unit works through tasks of 30 ms, 3 a round (a round takes about 1.5 of them),
  // so the queue is never idle while the rounds run (`busyWhileRounds` says whether it was).
  const busyTasks = Math.max(300, Math.ceil((MESSAGE_ROUNDS * 3) / 100) * 100);
  for (let sent = 0; sent < busyTasks; sent += 100) await addMessages('msg', 'busy', 100);
  const phaseStart = now();
  /** When the whole workspace goes idle: what waiting for an empty queue would wait for. */
  const workspaceIdle = new Promise<number>((resolve) => {
    waiter!.subscribe(
      { query: `subscription{deriverStatus(workspaceId:"msg",untilIdle:true){${COUNTS}}}` },
      { next: () => {}, error: (error) => console.error(error), complete: () => resolve(now()) },
    );
  });
  /** Completes at the last change of the session's tasks; `changedAt` of its last event is that commit. */
  const sessionDone = (session: string) =>
    new Promise<number>((resolve) => {
      let last: { changedAt: number } | undefined;
      waiter!.subscribe<{ deriverStatus: Counts }>(
        {
          query: `subscription($s:ID){deriverStatus(workspaceId:"msg",sessionId:$s,untilIdle:true,coalesceMs:0){${COUNTS}}}`,
          variables: { s: session },
        },
        {
          next: (result) => {
            last = result.extensions as { changedAt: number };
          },
          error: (error) => console.error(error),
          complete: () => resolve(last?.changedAt ?? Number.NaN),
        },
      );
    });
  const messagesDone = (ids: string[]) =>
    new Promise<number>((resolve) => {
      waiter!.subscribe(
        {
          query:
            'subscription($ids:[ID!]!){messageDerivation(workspaceId:"msg",messageIds:$ids){done total}}',
          variables: { ids },
        },
        { next: () => {}, error: (error) => console.error(error), complete: () => resolve(now()) },
      );
    });
  const waits: number[] = [];
  const roundStarts: number[] = [];
  for (let r = 0; r < MESSAGE_ROUNDS; r++) {
    const session = `m${r}`;
    await gql(
      'mutation($s:ID!){upsertSession(workspaceId:"msg",id:$s,peers:[{peerId:"a"},{peerId:"b",observeOthers:true}]){id}}',
      { s: session },
    );
    roundStarts.push(now());
    const sent = await gql<{ addMessages: { messages: { id: string }[] } }>(
      'mutation($s:ID!){addMessages(workspaceId:"msg",sessionId:$s,messages:[{peerId:"a",content:"hi"}]){messages{id}}}',
      { s: session },
    );
    const [committedAt, resolvedAt] = await Promise.all([
      sessionDone(session),
      messagesDone(sent.addMessages.messages.map((m) => m.id)),
    ]);
    waits.push(resolvedAt - committedAt);
  }
  const roundsEnd = now();
  const idleAt = await workspaceIdle;
  await closeAll([waiter!]);
  const sorted = [...waits].sort((a, b) => a - b);
  const messageWaitP99Ms = round(percentile(sorted, 99), 2);
  const idleWaitMs = round(mean(roundStarts.map((start) => idleAt - start)), 0);
  report({
    bench: 'live',
    phase: 'message-wait',
    workload: `a message of 2 tasks (30 ms each) per round while another session works through ${busyTasks} tasks`,
    rounds: waits.length,
    messageWait: {
      p50Ms: round(percentile(sorted, 50), 2),
      p99Ms: messageWaitP99Ms,
      maxMs: round(sorted.at(-1) ?? Number.NaN, 2),
    },
    busyWhileRounds: roundsEnd < idleAt,
    roundsSeconds: round((roundsEnd - phaseStart) / 1000, 1),
    idleWaitMs,
  });
  return { messageWaitP99Ms, idleWaitMs };
}
