/**
 * `npm run demo`: drives a realistic workload against a running server so the counts visibly move.
 * Several sessions, peers that observe others, a few hundred messages arriving over time, while a
 * live subscription prints what it is pushed: percent done, counts, throughput and time to idle.
 * It starts by printing where to watch the same workspace (the dashboard, and a subscription to
 * paste into GraphiQL).
 *
 *   npm start                          # in one terminal
 *   npm run demo                       # in another
 *   npm run demo -- --token "$KEY"     # when the server runs with AUTH_JWT_SECRET
 *   npm run demo -- --help
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDeriverClient, DeriverClientError } from '../src/client/index.ts';
import { DEMO_FAIL_MARK } from '../src/handlers/demo-handler.ts';

const HELP = `Usage: npm run demo -- [options]

  --url URL          the server's GraphQL URL (DERIVER_URL; default http://127.0.0.1:$PORT/graphql, PORT 4000)
  --token KEY        a key, when the server runs with AUTH_JWT_SECRET (DERIVER_TOKEN); an admin key or one
                     for the workspace, e.g. from: npm run -s cli -- key create --workspace demo
  --workspace W      the workspace to fill (default: a new demo-<id>)
  --sessions N       sessions (default 4)
  --messages N       messages in all (default 300)
  --fail-rate F      the share of messages whose tasks fail once, 0 to 1 (default 0): failed tasks
                     on the dashboard, and a Retry that succeeds
`;

let options: ReturnType<typeof readOptions>;
try {
  options = readOptions();
} catch (error) {
  console.error(
    `demo: ${error instanceof Error ? error.message : String(error)} (see npm run demo -- --help)`,
  );
  process.exit(1);
}
if (options.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function readOptions() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.DERIVER_URL },
      token: { type: 'string', default: process.env.DERIVER_TOKEN },
      workspace: { type: 'string' },
      sessions: { type: 'string', default: process.env.DEMO_SESSIONS ?? '4' },
      messages: { type: 'string', default: process.env.DEMO_MESSAGES ?? '300' },
      'fail-rate': { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const whole = (name: 'sessions' | 'messages') => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a whole number from 1`);
    return value;
  };
  return {
    help: values.help === true,
    url: values.url ?? `http://127.0.0.1:${process.env.PORT ?? 4000}/graphql`,
    token: values.token,
    workspaceId: values.workspace ?? `demo-${Date.now().toString(36)}`,
    sessions: whole('sessions'),
    messages: whole('messages'),
    failRate: (() => {
      const rate = Number(values['fail-rate']);
      if (!(rate >= 0 && rate <= 1)) throw new Error('--fail-rate must be a number from 0 to 1');
      return rate;
    })(),
  };
}

const { url, workspaceId } = options;
const SESSIONS = options.sessions;
const MESSAGES = options.messages;
const client = createDeriverClient({ url, token: options.token, workspaceId });
/** A server that is away, a missing or refused key: one line that says what to do, no stack. */
function fail(error: unknown): never {
  if (!(error instanceof DeriverClientError)) throw error;
  const hint =
    error.code === 'NETWORK'
      ? ' Is the server running? Start it with `npm start` in another terminal.'
      : error.code === 'UNAUTHENTICATED' || error.code === 'FORBIDDEN'
        ? ' Pass a key: npm run demo -- --token "$(npm run -s cli -- key create --admin)" (with the server\'s AUTH_JWT_SECRET set).'
        : '';
  console.error(`demo: ${error.message} (${error.code}).${hint}`);
  process.exit(1);
}

async function main(): Promise<void> {
  // Before printing where to watch: is the server there, and does it take the key?
  await client.getDeriverStatus();
  const people = ['alice', 'bob', 'carol', 'dave', 'erin'];
  const lines = [
    'I moved to Lisbon last month.',
    'How is the new job going?',
    'I started running again, 5k three times a week.',
    'My sister is visiting next weekend.',
    'I am thinking of learning Portuguese properly.',
    'The assistant keeps forgetting my coffee order.',
  ];

  const watchQuery = `subscription Watch {
    deriverStatus(workspaceId: "${workspaceId}") {
      totalWorkUnits pendingWorkUnits inProgressWorkUnits completedWorkUnits failedWorkUnits
      throughputPerSecond estimatedSecondsToIdle
    }
  }`;
  const site = url.replace(/\/graphql$/, '');
  console.log(`Deriver Live demo: ${SESSIONS} sessions, ${MESSAGES} messages into workspace "${workspaceId}" on ${url}
    Watch the same workspace live:
      dashboard: ${site}/?workspace=${workspaceId}
      GraphiQL:  ${url}  (paste this subscription and run it)
  ${watchQuery.replace(/^/gm, '      ')}
  `);
  for (let s = 0; s < SESSIONS; s++) {
    await client.upsertSession({
      workspaceId,
      id: `chat-${s}`,
      peers: people.slice(0, 3 + (s % 3)).map((peerId, i) => ({ peerId, observeOthers: i % 2 === 1 })),
    });
  }

  /** "12 s", "3 min 5 s"; "?" while nothing completed lately. */
  const duration = (seconds: number | null): string =>
    seconds === null
      ? '?'
      : seconds < 60
        ? `${seconds} s`
        : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;

  console.log('  done     pending  running  completed  failed      rate   to idle');
  const watcher = (async () => {
    for await (const status of client.watchDeriverStatus({ workspaceId }, { coalesceMs: 500 })) {
      // Rounded down: 100% only when every task is finished.
      const percent =
        status.totalWorkUnits === 0
          ? 100
          : Math.floor((100 * status.completedWorkUnits) / status.totalWorkUnits);
      const bar = '#'.repeat(Math.floor(percent / 5)).padEnd(20, '.');
      console.log(
        [
          `${String(percent).padStart(5)}%`,
          String(status.pendingWorkUnits).padStart(9),
          String(status.inProgressWorkUnits).padStart(8),
          `${status.completedWorkUnits}/${status.totalWorkUnits}`.padStart(10),
          String(status.failedWorkUnits).padStart(7),
          `${status.throughputPerSecond}/s`.padStart(9),
          duration(status.estimatedSecondsToIdle).padStart(9),
          ` ${bar}`,
        ].join(' '),
      );
    }
  })();

  let sent = 0;
  while (sent < MESSAGES) {
    const session = Math.floor(Math.random() * SESSIONS);
    const batch = 1 + Math.floor(Math.random() * 5);
    const messages = Array.from({ length: batch }, () => ({
      peerId: people[Math.floor(Math.random() * (3 + (session % 3)))] ?? 'alice',
      content: `${lines[Math.floor(Math.random() * lines.length)] ?? ''}${Math.random() < options.failRate ? ` ${DEMO_FAIL_MARK}` : ''}`,
    }));
    await client.addMessages({ workspaceId, sessionId: `chat-${session}`, messages });
    sent += batch;
    await sleep(20 + Math.random() * 80);
  }
  console.log(`sent ${sent} messages; waiting for the deriver to finish...`);
  const started = Date.now();
  const idle = await client.waitForIdle({ workspaceId });
  console.log(
    `idle after ${Date.now() - started} ms: ${idle.completedWorkUnits} tasks done, ${idle.failedWorkUnits} failed`,
  );
  await client.close();
  await watcher.catch(() => {});
}

await main().catch(fail);
