/**
 * Honcho's Python SDKs, by their wire: `honcho-ai` 1.5.0 (through `honcho-core` 1.5.1, Honcho's v2
 * API) and `honcho-ai` 2.3.0 (v3). Neither is on a registry this machine reaches, so each SDK
 * method's requests are written here as the SDK sends them (read from its tagged sources: method,
 * path, query and body, `null`s included), in the order a program makes them, and every answer is
 * checked against the SDK's pydantic model: each required field present with its type, and a
 * model that forbids extra fields getting none. A change that would break either SDK fails here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

const SECRET = 'a-secret-for-the-python-wire-test-32bytes!';

/** A field's type as pydantic checks it. */
type FieldType =
  | 'str'
  | 'int'
  | 'bool'
  | 'datetime'
  | 'dict'
  | 'optional-dict'
  | Model
  | { map: Model }
  | 'any';

/** A pydantic model: required fields (no default), optional ones, and whether extras are refused. */
interface Model {
  readonly name: string;
  readonly required: Readonly<Record<string, FieldType>>;
  readonly optional?: Readonly<Record<string, FieldType>>;
  readonly forbidExtra?: boolean;
}

/** Whether `value` validates as `type`; the reason when not. */
function check(type: FieldType, value: unknown, at: string): string[] {
  if (type === 'any') return [];
  if (typeof type === 'object' && 'map' in type) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${at}: not an object`];
    return Object.entries(value).flatMap(([k, v]) => check(type.map, v, `${at}.${k}`));
  }
  if (typeof type === 'object') return conforms(type, value, at);
  switch (type) {
    case 'str':
      return typeof value === 'string' ? [] : [`${at}: not a string (${JSON.stringify(value)})`];
    case 'int':
      return Number.isInteger(value) ? [] : [`${at}: not an int (${JSON.stringify(value)})`];
    case 'bool':
      return typeof value === 'boolean' ? [] : [`${at}: not a bool`];
    case 'datetime':
      return typeof value === 'string' && !Number.isNaN(Date.parse(value)) && /^\d{4}-\d\d-\d\dT/.test(value)
        ? []
        : [`${at}: not an ISO 8601 datetime (${JSON.stringify(value)})`];
    case 'dict':
      return typeof value === 'object' && value !== null && !Array.isArray(value)
        ? []
        : [`${at}: not a dict`];
    case 'optional-dict':
      return value === null || (typeof value === 'object' && !Array.isArray(value))
        ? []
        : [`${at}: not a dict`];
  }
}

function conforms(model: Model, value: unknown, at = model.name): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${at}: not an object`];
  const record = value as Record<string, unknown>;
  const problems = Object.entries(model.required).flatMap(([field, type]) =>
    field in record ? check(type, record[field], `${at}.${field}`) : [`${at}.${field}: missing (required)`],
  );
  for (const [field, type] of Object.entries(model.optional ?? {})) {
    if (field in record && record[field] !== null)
      problems.push(...check(type, record[field], `${at}.${field}`));
  }
  if (model.forbidExtra) {
    const known = new Set([...Object.keys(model.required), ...Object.keys(model.optional ?? {})]);
    for (const field of Object.keys(record))
      if (!known.has(field)) problems.push(`${at}.${field}: extra (forbidden)`);
  }
  return problems;
}

// honcho-core 1.5.1 (`src/honcho_core/types/...`): what the 1.x SDK validates.
const COUNTS = {
  total_work_units: 'int',
  completed_work_units: 'int',
  in_progress_work_units: 'int',
  pending_work_units: 'int',
} as const;
const V2 = {
  workspace: {
    name: 'Workspace',
    required: { id: 'str', created_at: 'datetime' },
    optional: { metadata: 'optional-dict', configuration: 'optional-dict' },
  },
  peer: {
    name: 'Peer',
    required: { id: 'str', created_at: 'datetime', workspace_id: 'str' },
    optional: { metadata: 'optional-dict', configuration: 'optional-dict' },
  },
  session: {
    name: 'Session',
    required: { id: 'str', created_at: 'datetime', is_active: 'bool', workspace_id: 'str' },
    optional: { metadata: 'optional-dict', configuration: 'optional-dict' },
  },
  message: {
    name: 'Message',
    required: {
      id: 'str',
      content: 'str',
      created_at: 'datetime',
      peer_id: 'str',
      session_id: 'str',
      token_count: 'int',
      workspace_id: 'str',
    },
    optional: { metadata: 'optional-dict' },
  },
  status: {
    name: 'DeriverStatus',
    required: COUNTS,
    optional: { sessions: { map: { name: 'Sessions', required: COUNTS, optional: { session_id: 'str' } } } },
  },
} satisfies Record<string, Model>;

// honcho-ai 2.3.0 (`sdks/python/src/honcho/api_types.py`): what the 2.x SDK validates.
const PEER_CONFIG: Model = {
  name: 'PeerConfig',
  required: {},
  optional: { observe_me: 'any' },
  forbidExtra: true,
};
const V3 = {
  workspace: {
    name: 'WorkspaceResponse',
    required: { id: 'str', created_at: 'datetime' },
    optional: { metadata: 'dict', configuration: 'dict' },
  },
  peer: {
    name: 'PeerResponse',
    required: { id: 'str', workspace_id: 'str', created_at: 'datetime' },
    optional: { metadata: 'dict', configuration: PEER_CONFIG },
  },
  session: {
    name: 'SessionResponse',
    required: { id: 'str', is_active: 'bool', workspace_id: 'str', created_at: 'datetime' },
    optional: { metadata: 'dict', configuration: 'dict' },
  },
  message: {
    name: 'MessageResponse',
    required: {
      id: 'str',
      content: 'str',
      peer_id: 'str',
      session_id: 'str',
      created_at: 'datetime',
      workspace_id: 'str',
      token_count: 'int',
    },
    optional: { metadata: 'dict' },
  },
  status: {
    name: 'QueueStatusResponse',
    required: COUNTS,
    optional: {
      sessions: { map: { name: 'SessionQueueStatus', required: COUNTS, optional: { session_id: 'str' } } },
    },
  },
} satisfies Record<string, Model>;

interface Call {
  /** The SDK method, as a program calls it. */
  readonly sdk: string;
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly path: string;
  readonly body?: unknown;
  /** The model the answer must validate as; a list of it for `list`. */
  readonly model: Model;
  readonly list?: boolean;
  /** More to check of the answer (a round trip). */
  readonly andThen?: (answer: Record<string, unknown>) => void;
}

const W = 'py-acme';
const META = { plan: 'pro', tags: ['a', 'b'], nested: { n: 1 } };

/** 1.x (v2), in the order of a program: the constructor, peers, a session, messages, status. */
const V1_CALLS: Call[] = [
  { sdk: 'Honcho()', method: 'POST', path: '/v2/workspaces', body: { id: W }, model: V2.workspace },
  {
    sdk: 'honcho.set_metadata(META)',
    method: 'PUT',
    path: `/v2/workspaces/${W}`,
    body: { metadata: META },
    model: V2.workspace,
  },
  {
    sdk: 'honcho.get_metadata()',
    method: 'POST',
    path: '/v2/workspaces',
    body: { id: W },
    model: V2.workspace,
    andThen: (a) => expect(a.metadata).toEqual(META),
  },
  {
    sdk: 'honcho.peer("alice", metadata=META)',
    method: 'POST',
    path: `/v2/workspaces/${W}/peers`,
    body: { id: 'alice', metadata: META },
    model: V2.peer,
  },
  {
    sdk: 'peer.set_metadata({"role": "user"})',
    method: 'PUT',
    path: `/v2/workspaces/${W}/peers/alice`,
    body: { metadata: { role: 'user' } },
    model: V2.peer,
  },
  {
    sdk: 'peer.get_metadata()',
    method: 'POST',
    path: `/v2/workspaces/${W}/peers`,
    body: { id: 'alice' },
    model: V2.peer,
    andThen: (a) => expect(a.metadata).toEqual({ role: 'user' }),
  },
  {
    sdk: 'peer.set_peer_config({"observe_me": True})',
    method: 'PUT',
    path: `/v2/workspaces/${W}/peers/alice`,
    body: { configuration: { observe_me: true } },
    model: V2.peer,
  },
  {
    sdk: 'peer.get_peer_config()',
    method: 'POST',
    path: `/v2/workspaces/${W}/peers`,
    body: { id: 'alice' },
    model: V2.peer,
    andThen: (a) => expect(a.configuration).toEqual({ observe_me: true }),
  },
  {
    sdk: 'honcho.session("chat", metadata={"topic": "x"})',
    method: 'POST',
    path: `/v2/workspaces/${W}/sessions`,
    body: { id: 'chat', metadata: { topic: 'x' } },
    model: V2.session,
  },
  {
    sdk: 'session.add_peers(["alice", ("bob", SessionPeerConfig(observe_others=True))])',
    method: 'POST',
    path: `/v2/workspaces/${W}/sessions/chat/peers`,
    body: { alice: {}, bob: { observe_me: null, observe_others: true } },
    model: V2.session,
  },
  {
    sdk: 'session.add_messages([alice.message("hi"), ...])',
    method: 'POST',
    path: `/v2/workspaces/${W}/sessions/chat/messages/`,
    body: {
      messages: [
        { peer_id: 'alice', content: 'hi', metadata: null, created_at: null },
        { peer_id: 'bob', content: 'hello', metadata: { mood: 'ok' }, created_at: null },
      ],
    },
    model: V2.message,
    list: true,
  },
  {
    sdk: 'session.get_metadata()',
    method: 'POST',
    path: `/v2/workspaces/${W}/sessions`,
    body: { id: 'chat' },
    model: V2.session,
    andThen: (a) => expect(a.metadata).toEqual({ topic: 'x' }),
  },
  {
    sdk: 'session.set_metadata({"topic": "y"})',
    method: 'PUT',
    path: `/v2/workspaces/${W}/sessions/chat`,
    body: { metadata: { topic: 'y' } },
    model: V2.session,
    andThen: (a) => expect(a.metadata).toEqual({ topic: 'y' }),
  },
  {
    sdk: 'honcho.get_deriver_status()',
    method: 'GET',
    path: `/v2/workspaces/${W}/deriver/status`,
    model: V2.status,
    andThen: (a) => expect(Object.keys(a.sessions as object)).toEqual(['chat']),
  },
  {
    sdk: 'honcho.get_deriver_status(observer_id="bob", sender_id="alice", session_id="chat")',
    method: 'GET',
    path: `/v2/workspaces/${W}/deriver/status?observer_id=bob&sender_id=alice&session_id=chat`,
    model: V2.status,
    andThen: (a) => expect(a).toMatchObject({ total_work_units: 1 }),
  },
  {
    sdk: 'session.get_deriver_status(observer_id="bob")',
    method: 'GET',
    path: `/v2/workspaces/${W}/deriver/status?observer_id=bob&session_id=chat`,
    model: V2.status,
    andThen: (a) => expect(a.sessions).toBeUndefined(),
  },
];

/** 2.x (v3), likewise. */
const V2_CALLS: Call[] = [
  {
    sdk: 'honcho.peer("carol") (ensures the workspace first)',
    method: 'POST',
    path: '/v3/workspaces',
    body: { id: W },
    model: V3.workspace,
  },
  {
    sdk: 'honcho.peer("carol", configuration=PeerConfig(observe_me=False))',
    method: 'POST',
    path: `/v3/workspaces/${W}/peers`,
    body: { id: 'carol', configuration: { observe_me: false } },
    model: V3.peer,
  },
  {
    sdk: 'peer.set_metadata({"k": 1})',
    method: 'PUT',
    path: `/v3/workspaces/${W}/peers/carol`,
    body: { metadata: { k: 1 } },
    model: V3.peer,
  },
  {
    sdk: 'peer.get_metadata()',
    method: 'POST',
    path: `/v3/workspaces/${W}/peers`,
    body: { id: 'carol' },
    model: V3.peer,
    andThen: (a) => expect(a).toMatchObject({ metadata: { k: 1 }, configuration: { observe_me: false } }),
  },
  {
    sdk: 'honcho.session("room", peers=["carol", ("dave", SessionPeerConfig(observe_others=True))])',
    method: 'POST',
    path: `/v3/workspaces/${W}/sessions`,
    body: { id: 'room', peers: { carol: {}, dave: { observe_others: true } } },
    model: V3.session,
  },
  {
    sdk: 'session.add_peers("erin")',
    method: 'POST',
    path: `/v3/workspaces/${W}/sessions/room/peers`,
    body: { erin: {} },
    model: V3.session,
  },
  {
    sdk: 'session.add_messages(dave.message("hi", metadata={"m": 1}))',
    method: 'POST',
    path: `/v3/workspaces/${W}/sessions/room/messages`,
    body: { messages: [{ peer_id: 'dave', content: 'hi', metadata: { m: 1 } }] },
    model: V3.message,
    list: true,
  },
  {
    sdk: 'session.set_metadata({"s": 2})',
    method: 'PUT',
    path: `/v3/workspaces/${W}/sessions/room`,
    body: { metadata: { s: 2 } },
    model: V3.session,
  },
  {
    sdk: 'session.get_metadata()',
    method: 'POST',
    path: `/v3/workspaces/${W}/sessions`,
    body: { id: 'room' },
    model: V3.session,
    andThen: (a) => expect(a.metadata).toEqual({ s: 2 }),
  },
  {
    sdk: 'honcho.set_metadata({"w": 3})',
    method: 'PUT',
    path: `/v3/workspaces/${W}`,
    body: { metadata: { w: 3 } },
    model: V3.workspace,
  },
  {
    sdk: 'honcho.get_metadata()',
    method: 'POST',
    path: '/v3/workspaces',
    body: { id: W },
    model: V3.workspace,
    andThen: (a) => expect(a.metadata).toEqual({ w: 3 }),
  },
  { sdk: 'honcho.queue_status()', method: 'GET', path: `/v3/workspaces/${W}/queue/status`, model: V3.status },
  {
    sdk: 'honcho.queue_status(observer="dave", session="room")',
    method: 'GET',
    path: `/v3/workspaces/${W}/queue/status?observer_id=dave&session_id=room`,
    model: V3.status,
    andThen: (a) => expect(a.sessions).toBeUndefined(),
  },
];

let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer({ config: { authJwtSecret: SECRET, workerConcurrency: 0 } });
  key = await createKeyring({ secret: SECRET }).mint({ kind: 'workspace', workspaceId: W }, null);
});
afterAll(async () => {
  await server?.close();
});

async function run(call: Call): Promise<void> {
  const response = await fetch(new URL(call.path, server.url), {
    method: call.method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: call.body === undefined ? undefined : JSON.stringify(call.body),
  });
  const text = await response.text();
  expect(response.status, `${call.sdk}: ${text}`).toBeLessThan(300);
  const answer: unknown = JSON.parse(text);
  const problems = call.list
    ? Array.isArray(answer)
      ? answer.flatMap((item, i) => conforms(call.model, item, `${call.model.name}[${i}]`))
      : [`${call.model.name}: not a list`]
    : conforms(call.model, answer);
  expect(problems, call.sdk).toEqual([]);
  call.andThen?.(answer as Record<string, unknown>);
}

describe.each([
  ['honcho-ai 1.5.0 (v2 API)', V1_CALLS],
  ['honcho-ai 2.3.0 (v3 API)', V2_CALLS],
])('%s', (_name, calls) => {
  it('answers every request the SDK sends with what its models require', async () => {
    for (const call of calls) await run(call);
  });
});

it('the checks refuse what the SDKs would refuse', () => {
  expect(conforms(V3.peer, { id: 'p', workspace_id: 'w' })).toEqual([
    'PeerResponse.created_at: missing (required)',
  ]);
  expect(
    conforms(V3.peer, {
      id: 'p',
      workspace_id: 'w',
      created_at: '2026-01-01T00:00:00Z',
      configuration: { x: 1 },
    }),
  ).toEqual(['PeerResponse.configuration.x: extra (forbidden)']);
  expect(
    conforms(V2.message, {
      id: '1',
      content: '',
      created_at: 'yesterday',
      peer_id: 'a',
      session_id: 's',
      token_count: 1.5,
      workspace_id: 'w',
    }),
  ).toHaveLength(2);
});
