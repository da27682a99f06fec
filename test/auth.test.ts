/**
 * Keys and scopes (SPEC 7-8) on every transport: a table of scopes x operations x transports, each
 * cell the exact code a client sees. Keys are signed here with jose directly, independently of the
 * server's keyring.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeriverClient, DeriverClientError } from '../src/client/index.ts';
import { isLoopback } from '../src/server/config.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { type Outcome, send, type Transport } from './transports.ts';

const SECRET = 'test-secret-that-is-at-least-32-bytes-long';

async function sign(claims: Record<string, unknown>, options: { secret?: string; expiresAt?: number } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' });
  if (options.expiresAt !== undefined) jwt.setExpirationTime(Math.floor(options.expiresAt / 1000));
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

type Role = 'admin' | 'workspace' | 'session' | 'peer' | 'otherWorkspace';
type Credential = Role | 'none' | 'badSignature' | 'expired' | 'malformed';

const CLAIMS: Record<Role, Record<string, unknown>> = {
  admin: { ad: true },
  workspace: { w: 'w1' },
  session: { w: 'w1', s: 's1' },
  peer: { w: 'w1', p: 'p1' },
  otherWorkspace: { w: 'w2' },
};

interface Op {
  readonly query: string;
  readonly allowed: readonly Role[];
}

const OPS: Record<string, Op> = {
  statusOfWorkspace: {
    query: '{deriverStatus(workspaceId:"w1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace'],
  },
  statusOfSession: {
    query: '{deriverStatus(workspaceId:"w1",sessionId:"s1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  statusObservedByPeer: {
    query: '{deriverStatus(workspaceId:"w1",observerId:"p1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace', 'peer'],
  },
  statusSentByPeer: {
    query: '{deriverStatus(workspaceId:"w1",senderId:"p1",sessionId:"s1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace', 'session', 'peer'],
  },
  statusOfOtherPeer: {
    query: '{deriverStatus(workspaceId:"w1",observerId:"p2"){totalWorkUnits}}',
    allowed: ['admin', 'workspace'],
  },
  session: {
    query: '{session(workspaceId:"w1",id:"s1"){id deriverStatus{totalWorkUnits}}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  peer: { query: '{peer(workspaceId:"w1",id:"p1"){id}}', allowed: ['admin', 'workspace', 'peer'] },
  // Get-or-create of the key's own workspace: any key of it (as Honcho allows every SDK client to).
  upsertWorkspace: {
    query: 'mutation{upsertWorkspace(id:"w1"){id}}',
    allowed: ['admin', 'workspace', 'session', 'peer'],
  },
  // Changing it: an admin or workspace key only.
  changeWorkspace: {
    query: 'mutation{upsertWorkspace(id:"w1",metadata:{plan:"pro"}){id}}',
    allowed: ['admin', 'workspace'],
  },
  upsertPeer: {
    query: 'mutation{upsertPeer(workspaceId:"w1",id:"p1"){id}}',
    allowed: ['admin', 'workspace', 'peer'],
  },
  upsertSession: {
    query: 'mutation{upsertSession(workspaceId:"w1",id:"s1"){id}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  removeSessionPeers: {
    query: 'mutation{removeSessionPeers(workspaceId:"w1",sessionId:"s1",peerIds:["ghost"]){id}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  addMessagesAsPeer: {
    query:
      'mutation{addMessages(workspaceId:"w1",sessionId:"s1",messages:[{peerId:"p1",content:"hi"}]){enqueuedTasks}}',
    allowed: ['admin', 'workspace', 'session', 'peer'],
  },
  addMessagesAsOtherPeer: {
    query:
      'mutation{addMessages(workspaceId:"w1",sessionId:"s1",messages:[{peerId:"p2",content:"hi"}]){enqueuedTasks}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  createSessionKey: {
    query: 'mutation{createKey(workspaceId:"w1",sessionId:"s1"){key}}',
    allowed: ['admin', 'workspace'],
  },
  createAdminKey: { query: 'mutation{createKey(admin:true){key}}', allowed: ['admin'] },
  watchSession: {
    query: 'subscription{deriverStatus(workspaceId:"w1",sessionId:"s1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  watchPeer: {
    query: 'subscription{deriverStatus(workspaceId:"w1",senderId:"p1"){totalWorkUnits}}',
    allowed: ['admin', 'workspace', 'peer'],
  },
  workUnitsOfSession: {
    query: '{workUnits(workspaceId:"w1",sessionId:"s1"){nodes{id}}}',
    allowed: ['admin', 'workspace', 'session'],
  },
  workUnitsObservedByPeer: {
    query: '{workUnits(workspaceId:"w1",observerId:"p1"){nodes{id}}}',
    allowed: ['admin', 'workspace', 'peer'],
  },
  failedTasksOfWorkspace: {
    query: '{failedTasks(workspaceId:"w1"){nodes{id}}}',
    allowed: ['admin', 'workspace'],
  },
  retryFailedTasksOfSession: {
    query: 'mutation{retryFailedTasks(workspaceId:"w1",sessionId:"s1"){retriedTasks}}',
    allowed: ['admin', 'workspace'],
  },
  cancelPendingTasksOfPeer: {
    query: 'mutation{cancelPendingTasks(workspaceId:"w1",observerId:"p1"){cancelledTasks}}',
    allowed: ['admin', 'workspace'],
  },
};

const CREDENTIALS: Credential[] = [
  'none',
  'badSignature',
  'expired',
  'malformed',
  'admin',
  'workspace',
  'session',
  'peer',
  'otherWorkspace',
];
const TRANSPORTS: Transport[] = ['http', 'sse', 'ws'];

/** The code each cell must show. */
function expected(credential: Credential, op: Op, transport: Transport): string {
  if (
    credential === 'none' ||
    credential === 'badSignature' ||
    credential === 'expired' ||
    credential === 'malformed'
  ) {
    return transport === 'ws' ? 'close:4403' : 'UNAUTHENTICATED';
  }
  return op.allowed.includes(credential) ? 'OK' : 'FORBIDDEN';
}

const HTTP_STATUS: Record<string, number> = { OK: 200, UNAUTHENTICATED: 401, FORBIDDEN: 403 };

let server: TestServer;
const tokens = new Map<Credential, string | undefined>();

beforeAll(async () => {
  server = await startTestServer({ config: { authJwtSecret: SECRET, introspection: false } });
  tokens.set('none', undefined);
  tokens.set(
    'badSignature',
    await sign({ ad: true }, { secret: 'another-secret-that-is-also-32-bytes-long' }),
  );
  tokens.set('expired', await sign({ ad: true }, { expiresAt: Date.now() - 60_000 }));
  tokens.set('malformed', 'not.a.jwt');
  for (const role of Object.keys(CLAIMS) as Role[]) tokens.set(role, await sign(CLAIMS[role]));
  const admin = tokens.get('admin');
  for (const query of [
    'mutation{upsertSession(workspaceId:"w1",id:"s1",peers:[{peerId:"p1",observeOthers:true},{peerId:"p2"}]){id}}',
    'mutation{addMessages(workspaceId:"w1",sessionId:"s1",messages:[{peerId:"p1",content:"hello"}]){enqueuedTasks}}',
    'mutation{upsertSession(workspaceId:"w2",id:"s2",peers:[{peerId:"q1"}]){id}}',
  ]) {
    expect((await send('http', server.url, { query, token: admin })).code).toBe('OK');
  }
});
afterAll(() => server.close());

describe('auth matrix: every credential x every operation x every transport', () => {
  const cells = CREDENTIALS.flatMap((credential) =>
    Object.entries(OPS).flatMap(([name, op]) =>
      TRANSPORTS.filter((t) => !(t === 'http' && op.query.startsWith('subscription'))).map(
        (transport) => [credential, name, transport] as const,
      ),
    ),
  );

  it(`answers each of the ${cells.length} cells with exactly the expected code`, async () => {
    const mismatches: string[] = [];
    for (const [credential, name, transport] of cells) {
      const op = OPS[name]!;
      const outcome: Outcome = await send(transport, server.url, {
        query: op.query,
        token: tokens.get(credential),
      });
      const want = expected(credential, op, transport);
      const statusOk = transport !== 'http' || outcome.status === HTTP_STATUS[want];
      if (outcome.code !== want || !statusOk) {
        mismatches.push(
          `${credential} ${name} ${transport}: got ${outcome.code} (${outcome.status}) ${outcome.message ?? ''}`,
        );
      }
    }
    expect(mismatches).toEqual([]);
  });
});

describe('what a refusal reveals', () => {
  it('refuses another tenant the same way whether the object exists or not', async () => {
    const token = tokens.get('otherWorkspace');
    const existing = await send('http', server.url, {
      query: '{session(workspaceId:"w1",id:"s1"){id}}',
      token,
    });
    const missing = await send('http', server.url, {
      query: '{session(workspaceId:"w1",id:"nope"){id}}',
      token,
    });
    expect(existing.code).toBe('FORBIDDEN');
    expect(missing.code).toBe('FORBIDDEN');
    expect(existing.message?.replace('"s1"', '"ID"')).toBe(missing.message?.replace('"nope"', '"ID"'));
  });

  it('says why a bad key is refused, and closes a WebSocket with 4403 at connection_init', async () => {
    const expired = await send('http', server.url, { query: '{__typename}', token: tokens.get('expired') });
    expect(expired).toMatchObject({ code: 'UNAUTHENTICATED', status: 401, message: 'the key has expired' });
    const none = await send('ws', server.url, { query: '{__typename}' });
    expect(none).toMatchObject({ code: 'close:4403', message: expect.stringMatching(/a key is required/) });
  });
});

describe('keys minted by the server', () => {
  it('mints a peer key that reaches exactly its peer, and refuses scopes that make no sense', async () => {
    const minted = await send('http', server.url, {
      query:
        'mutation{createKey(workspaceId:"w1",peerId:"p1",expiresInSeconds:600){key workspaceId peerId sessionId admin expiresAt}}',
      token: tokens.get('workspace'),
    });
    expect(minted.code).toBe('OK');
    const created = (minted.data as { createKey: { key: string; expiresAt: string } }).createKey;
    expect(created).toMatchObject({ workspaceId: 'w1', peerId: 'p1', sessionId: null, admin: false });
    expect(Date.parse(created.expiresAt) - Date.now()).toBeGreaterThan(590_000);
    const asPeer = (query: string) => send('ws', server.url, { query, token: created.key });
    expect((await asPeer('{peer(workspaceId:"w1",id:"p1"){id}}')).code).toBe('OK');
    expect((await asPeer('{peer(workspaceId:"w1",id:"p2"){id}}')).code).toBe('FORBIDDEN');

    const both = await send('http', server.url, {
      query: 'mutation{createKey(workspaceId:"w1",peerId:"p1",sessionId:"s1"){key}}',
      token: tokens.get('admin'),
    });
    expect(both).toMatchObject({
      code: 'BAD_USER_INPUT',
      message: 'peerId: a key names a session or a peer, not both',
    });
    const noWorkspace = await send('http', server.url, {
      query: 'mutation{createKey{key}}',
      token: tokens.get('admin'),
    });
    expect(noWorkspace.code).toBe('BAD_USER_INPUT');
  });

  it('ends a live subscription with UNAUTHENTICATED when its key expires, on WebSocket and SSE', async () => {
    for (const transport of ['ws', 'sse'] as const) {
      const token = await sign({ w: 'w1' }, { expiresAt: Date.now() + 1_500 });
      const events: Outcome[] = [];
      await collect(transport, server.url, token, events);
      expect(events[0]?.code).toBe('OK');
      expect(events.at(-1)).toMatchObject({ code: 'UNAUTHENTICATED', message: 'the key has expired' });
    }
  });
});

/** Every event of a watch on w1 until the server ends it. */
async function collect(
  transport: 'ws' | 'sse',
  url: string,
  token: string,
  events: Outcome[],
): Promise<void> {
  const query = 'subscription{deriverStatus(workspaceId:"w1"){totalWorkUnits}}';
  if (transport === 'sse') {
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query }),
    });
    const text = await response.text(); // ends when the subscription completes
    for (const block of text.split('\n\n').filter((b) => b.includes('event: next'))) {
      const data = JSON.parse(
        block
          .split('\n')
          .find((l) => l.startsWith('data: '))!
          .slice(6),
      );
      events.push(
        data.errors
          ? { code: data.errors[0].extensions.code, message: data.errors[0].message }
          : { code: 'OK' },
      );
    }
    return;
  }
  const { createClient } = await import('graphql-ws');
  const { default: WebSocket } = await import('ws');
  const client = createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      client.subscribe(
        { query },
        {
          next: (result) =>
            events.push(
              result.errors
                ? { code: String(result.errors[0]?.extensions?.code), message: result.errors[0]?.message }
                : { code: 'OK' },
            ),
          error: reject,
          complete: resolve,
        },
      );
    });
  } finally {
    await client.dispose();
  }
}

describe('the typed client with a key', () => {
  it('mints a session key, and with it watches that session until idle over both of its transports', async () => {
    const admin = createDeriverClient({ url: server.url, token: tokens.get('workspace') });
    const { key } = await admin.createKey({ workspaceId: 'w1', sessionId: 's1', expiresInSeconds: 60 });
    await admin.close();
    const client = createDeriverClient({ url: server.url, token: key });
    try {
      const sent = await client.addMessages({
        workspaceId: 'w1',
        sessionId: 's1',
        messages: [{ peerId: 'p2', content: 'x' }],
      });
      expect(sent.enqueuedTasks).toBeGreaterThan(0);
      const idle = await client.waitForIdle({ workspaceId: 'w1', sessionId: 's1' }, { timeoutMs: 20_000 });
      expect(idle.pendingWorkUnits + idle.inProgressWorkUnits).toBe(0);
      const refused = await client.getDeriverStatus({ workspaceId: 'w1' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(DeriverClientError);
      expect((refused as DeriverClientError).code).toBe('FORBIDDEN');
    } finally {
      await client.close();
    }
  });
});

describe('binding without auth', () => {
  it('knows which addresses stay on this machine (others get a warning at start-up)', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].map(isLoopback)).toEqual([true, true, true, true]);
    expect(['0.0.0.0', '::', '10.0.0.5', 'example.com'].map(isLoopback)).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });
});
