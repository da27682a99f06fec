/**
 * No key learns whether another tenant's object exists: for every operation of the schema (each
 * root field, and each object field that takes an id) and every Honcho route, for every argument
 * that names an object, and for each scoped key (a workspace, a session and a peer key; an admin
 * reaches everything), the answer for another tenant's object equals, byte for byte apart from the
 * id, the answer for an id that exists nowhere. Generated from the printed schema and the route
 * table: an operation or route added without a line here fails the coverage check.
 *
 * "Another tenant" is workspace B for every key; for a session key, also another session of its own
 * workspace (its messages included), as a session key reaches its session only.
 */
import {
  type GraphQLArgument,
  type GraphQLField,
  GraphQLObjectType,
  getNamedType,
  isEnumType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/api/schema.ts';
import { createKeyring } from '../src/auth/keyring.ts';
import type { Scope } from '../src/auth/scope.ts';
import { ROUTES } from '../src/server/honcho-rest.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

const SECRET = 'a-secret-for-the-tenant-isolation-test-32b';
const A = 'tenant-a-ws';
const B = 'tenant-b-ws';
const NOBODY_WS = 'nobody-ws';

/** What an id argument names. */
type Kind = 'workspace' | 'session' | 'peer' | 'message' | 'task' | 'webhook';

/** The kind of an id argument, by name; `id` is the operation's own (see `OPERATIONS`). */
const KIND_OF_ARGUMENT: Readonly<Record<string, Kind>> = {
  workspaceId: 'workspace',
  sessionId: 'session',
  observerId: 'peer',
  senderId: 'peer',
  peerId: 'peer',
  peerIds: 'peer',
  messageIds: 'message',
  taskIds: 'task',
};

interface Operation {
  /** What its `id` argument names, when it has one. */
  readonly id?: Kind;
  /** Values of its required arguments that name no object. */
  readonly base?: Record<string, unknown>;
  /** For an object field: the query that reaches it, `$args` standing for the field's arguments. */
  readonly via?: (args: string, selection: string) => string;
}

/** Every operation, keyed `Type.field`; the coverage check holds this list to the schema. */
const OPERATIONS: Readonly<Record<string, Operation>> = {
  'Query.deriverStatus': {},
  'Query.deriverStatusHistory': {},
  'Query.failedTasks': {},
  'Query.messageDerivation': {},
  'Query.peer': { id: 'peer' },
  'Query.session': { id: 'session' },
  'Query.webhooks': {},
  'Query.workUnits': {},
  'Query.workspaces': {},
  'Mutation.addMessages': {},
  'Mutation.cancelPendingTasks': {},
  'Mutation.createKey': {},
  'Mutation.createWebhook': {
    base: {
      url: 'https://8.8.8.8/hook',
      events: ['QUEUE_EMPTY'],
      secret: 'a-webhook-secret-of-32-bytes-000',
    },
  },
  'Mutation.removeSessionPeers': {},
  'Mutation.removeWebhook': { id: 'webhook' },
  'Mutation.retryFailedTasks': {},
  'Mutation.testWebhook': { id: 'webhook' },
  'Mutation.upsertPeer': { id: 'peer' },
  'Mutation.upsertSession': { id: 'session' },
  'Mutation.upsertWorkspace': { id: 'workspace' },
  'Subscription.deriverStatus': { base: { untilIdle: true } },
  'Subscription.messageDerivation': {},
  'Session.deriverStatus': {
    via: (args, selection) =>
      `{ session(workspaceId: "${A}", id: "a-chat") { deriverStatus${args} ${selection} } }`,
  },
  'Message.derivation': {
    via: (args) =>
      // Each call adds a message: only the counts, not its id and seq, are the same from call to call.
      `mutation { addMessages(workspaceId: "${A}", sessionId: "a-chat", messages: [{ peerId: "a-alice", content: "x" }]) { messages { derivation${args} { __typename total pending inProgress completed failed done } } } }`,
  },
};

/** Objects the fixtures create: tenant A's own, A's other session (for a session key), tenant B's. */
interface Fixtures {
  own: Record<Kind, string>;
  otherSession: { session: string; message: string };
  b: Record<Kind, string>;
}

const NOBODY: Record<Kind, string> = {
  workspace: NOBODY_WS,
  session: 'nobody-session',
  peer: 'nobody-peer',
  message: '987654321',
  task: '987654322',
  webhook: '987654323',
};

/** Kinds scoped by a workspace: naming another tenant's one means naming B's workspace with it. */
const IN_WORKSPACE: readonly Kind[] = ['session', 'peer'];

const SCOPES: readonly Scope[] = [
  { kind: 'workspace', workspaceId: A },
  { kind: 'session', workspaceId: A, sessionId: 'a-chat' },
  { kind: 'peer', workspaceId: A, peerId: 'a-alice' },
];

/** Every operation of the schema: the root fields, and object fields that take an id argument. */
function schemaOperations(): { key: string; field: GraphQLField<unknown, unknown>; root: string | null }[] {
  const out: { key: string; field: GraphQLField<unknown, unknown>; root: string | null }[] = [];
  for (const type of Object.values(schema.getTypeMap())) {
    if (!(type instanceof GraphQLObjectType) || type.name.startsWith('__')) continue;
    const root = ['Query', 'Mutation', 'Subscription'].includes(type.name) ? type.name : null;
    for (const field of Object.values(type.getFields())) {
      const namesAnObject = field.args.some((arg) => getNamedType(arg.type).name === 'ID');
      if (root || namesAnObject) out.push({ key: `${type.name}.${field.name}`, field, root });
    }
  }
  return out;
}

/** The scalar fields of the field's type (no arguments needed): what the answer shows. */
function selectionOf(field: GraphQLField<unknown, unknown>): string {
  const type = getNamedType(field.type);
  if (!isObjectType(type)) return '';
  const scalars = Object.values(type.getFields())
    .filter((f) => f.args.every((a) => !isNonNullType(a.type)))
    .filter((f) => {
      const named = getNamedType(f.type);
      return isScalarType(named) || isEnumType(named);
    })
    .map((f) => f.name);
  return `{ __typename ${scalars.join(' ')} }`;
}

const literal = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(literal).join(', ')}]`
    : typeof value === 'object' && value !== null
      ? `{ ${Object.entries(value)
          .map(([k, v]) => `${k}: ${literal(v)}`)
          .join(', ')} }`
      : typeof value === 'string' && /^[A-Z_]+$/.test(value)
        ? value // an enum value
        : JSON.stringify(value);

/** An argument's own (tenant A's) value. */
function ownValue(arg: GraphQLArgument, op: Operation, fixtures: Fixtures): unknown {
  const kind = arg.name === 'id' ? op.id : KIND_OF_ARGUMENT[arg.name];
  if (!kind) return undefined;
  const value = fixtures.own[kind];
  return isListType(isNonNullType(arg.type) ? arg.type.ofType : arg.type) ? [value] : value;
}

interface Variant {
  readonly args: Record<string, unknown>;
  /** The ids in this variant (replaced by placeholders before answers are compared). */
  readonly ids: readonly string[];
}

/** For one argument: pairs of (another tenant's object, an object nobody has), argument sets alike. */
function variantsFor(
  arg: GraphQLArgument,
  kind: Kind,
  scope: Scope,
  base: Record<string, unknown>,
  fixtures: Fixtures,
  list: boolean,
): [Variant, Variant][] {
  const wrap = (id: string) => (list ? [id] : id);
  const withWorkspace = (workspace: string) =>
    'workspaceId' in base || arg.name !== 'workspaceId' ? { workspaceId: workspace } : {};
  if (kind === 'workspace') {
    return [
      [
        { args: { ...base, [arg.name]: wrap(B) }, ids: [B] },
        { args: { ...base, [arg.name]: wrap(NOBODY_WS) }, ids: [NOBODY_WS] },
      ],
    ];
  }
  const pairs: [Variant, Variant][] = [];
  // B's object, named in B's workspace (per-workspace ids) or in A's own (global ids) and B's.
  const workspaces = IN_WORKSPACE.includes(kind) ? [B] : [A, B];
  for (const workspace of workspaces) {
    const named = 'workspaceId' in base ? withWorkspace(workspace) : {};
    pairs.push([
      { args: { ...base, ...named, [arg.name]: wrap(fixtures.b[kind]) }, ids: [fixtures.b[kind], workspace] },
      { args: { ...base, ...named, [arg.name]: wrap(NOBODY[kind]) }, ids: [NOBODY[kind], workspace] },
    ]);
  }
  // A session key's other tenant inside its workspace: another session, and its messages.
  if (scope.kind === 'session' && (kind === 'session' || kind === 'message')) {
    const other = kind === 'session' ? fixtures.otherSession.session : fixtures.otherSession.message;
    pairs.push([
      { args: { ...base, [arg.name]: wrap(other) }, ids: [other] },
      { args: { ...base, [arg.name]: wrap(NOBODY[kind]) }, ids: [NOBODY[kind]] },
    ]);
  }
  return pairs;
}

/** An answer with the variant's ids (quoted, as JSON or inside a message) replaced by placeholders. */
const normalised = (text: string, ids: readonly string[]): string =>
  ids.reduce(
    (out, id, i) => out.replaceAll(`"${id}"`, `"<id${i}>"`).replaceAll(`\\"${id}\\"`, `\\"<id${i}>\\"`),
    text,
  );

let server: TestServer;
let fixtures: Fixtures;
const keys = createKeyring({ secret: SECRET });

beforeAll(async () => {
  server = await startTestServer({
    config: { authJwtSecret: SECRET, workerConcurrency: 0, webhookAllowPrivate: false },
  });
  const admin = await keys.mint({ kind: 'admin' }, null);
  const gql = async <T>(query: string): Promise<T> => {
    const out = await send('http', server.url, { query, token: admin });
    if (out.code !== 'OK') throw new Error(`${out.code}: ${out.message}`);
    return out.data as T;
  };
  const seed = async (workspace: string, session: string, peers: [string, string]) => {
    await gql(
      `mutation { upsertSession(workspaceId: "${workspace}", id: "${session}", peers: [{ peerId: "${peers[0]}" }, { peerId: "${peers[1]}", observeOthers: true }]) { id } }`,
    );
    const sent = await gql<{ addMessages: { messages: { id: string }[] } }>(
      `mutation { addMessages(workspaceId: "${workspace}", sessionId: "${session}", messages: [{ peerId: "${peers[0]}", content: "hi" }]) { messages { id } } }`,
    );
    return sent.addMessages.messages[0]!.id;
  };
  const hook = async (workspace: string) =>
    (
      await gql<{ createWebhook: { id: string } }>(
        `mutation { createWebhook(workspaceId: "${workspace}", url: "https://8.8.8.8/${workspace}", events: [QUEUE_EMPTY], secret: "a-webhook-secret-of-32-bytes-000") { id } }`,
      )
    ).createWebhook.id;
  const ownMessage = await seed(A, 'a-chat', ['a-alice', 'a-bob']);
  const otherMessage = await seed(A, 'a-other', ['a-carol', 'a-dave']);
  const bMessage = await seed(B, 'b-chat', ['b-erin', 'b-frank']);
  // Tasks: one of B's cancelled (failed for good), so `taskIds` can name a failed task of B's.
  await gql(`mutation { cancelPendingTasks(workspaceId: "${B}") { cancelledTasks } }`);
  const bTask = (
    await gql<{ failedTasks: { nodes: { id: string }[] } }>(
      `{ failedTasks(workspaceId: "${B}") { nodes { id } } }`,
    )
  ).failedTasks.nodes[0]!.id;
  fixtures = {
    own: {
      workspace: A,
      session: 'a-chat',
      peer: 'a-alice',
      message: ownMessage,
      task: '1',
      webhook: await hook(A),
    },
    otherSession: { session: 'a-other', message: otherMessage },
    b: {
      workspace: B,
      session: 'b-chat',
      peer: 'b-erin',
      message: bMessage,
      task: bTask,
      webhook: await hook(B),
    },
  };
});

afterAll(async () => {
  await server?.close();
});

it('covers every operation of the schema', () => {
  expect(
    schemaOperations()
      .map((o) => o.key)
      .sort(),
  ).toEqual(Object.keys(OPERATIONS).sort());
});

describe.each(SCOPES)('a $kind key', (scope) => {
  it('answers another tenant exactly as nobody, for every operation and every argument naming an object', async () => {
    const token = await keys.mint(scope, null);
    let compared = 0;
    for (const { key, field, root } of schemaOperations()) {
      const op = OPERATIONS[key];
      if (!op) continue; // the coverage test fails for it
      const base: Record<string, unknown> = { ...op.base };
      for (const arg of field.args) {
        const own = ownValue(arg, op, fixtures);
        if (own !== undefined) base[arg.name] = own;
      }
      if (key === 'Mutation.addMessages')
        base.messages = [{ peerId: scope.kind === 'peer' ? 'a-alice' : 'a-bob', content: 'x' }];
      const selection = selectionOf(field);
      for (const arg of field.args) {
        const kind = arg.name === 'id' ? op.id : KIND_OF_ARGUMENT[arg.name];
        if (!kind) continue;
        const list = isListType(isNonNullType(arg.type) ? arg.type.ofType : arg.type);
        for (const [foreign, nobody] of variantsFor(arg, kind, scope, base, fixtures, list)) {
          const answer = async (variant: Variant) => {
            const args = Object.entries(variant.args)
              .filter(([, v]) => v !== undefined)
              .map(([name, v]) => `${name}: ${literal(v)}`)
              .join(', ');
            const argText = args ? `(${args})` : '';
            const query = op.via
              ? op.via(argText, selection)
              : `${root === 'Query' ? '' : root!.toLowerCase()} { ${field.name}${argText} ${selection} }`;
            const transport = root === 'Subscription' ? 'ws' : 'http';
            const outcome = await send(transport, server.url, { query, token });
            return normalised(JSON.stringify(outcome), variant.ids);
          };
          const [seenForeign, seenNobody] = [await answer(foreign), await answer(nobody)];
          expect(seenForeign, `${key}(${arg.name}) for ${JSON.stringify(foreign.args)}`).toBe(seenNobody);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(40);
  });

  it('answers another tenant exactly as nobody on every Honcho route', async () => {
    const token = await keys.mint(scope, null);
    const bodies: Record<string, unknown> = {
      POST: { id: 'x-new', messages: [{ peer_id: 'a-alice', content: 'x' }] },
      PUT: { metadata: { k: 1 } },
    };
    let compared = 0;
    for (const route of ROUTES) {
      for (const path of Object.values(route.paths)) {
        const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
        for (const param of params) {
          // Another tenant's object (B's, in B's workspace) against one nobody has, in the same place.
          const fill = (workspace: string, id: string) =>
            path.replace(/\{(\w+)\}/g, (_m, name: string) =>
              name === 'workspace_id'
                ? workspace
                : name === param
                  ? id
                  : name === 'session_id'
                    ? 'a-chat'
                    : 'a-alice',
            );
          const kind: Kind =
            param === 'workspace_id' ? 'workspace' : param === 'session_id' ? 'session' : 'peer';
          const foreignId = fixtures.b[kind];
          const nobodyId = NOBODY[kind];
          const call = async (url: string, ids: string[]) => {
            const response = await fetch(new URL(url, server.url), {
              method: route.method,
              headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
              body: route.method === 'GET' ? undefined : JSON.stringify(bodies[route.method]),
            });
            return normalised(`${response.status} ${await response.text()}`, ids);
          };
          const foreign = await call(fill(B, foreignId), [foreignId, B]);
          const nobody = await call(fill(NOBODY_WS, nobodyId), [nobodyId, NOBODY_WS]);
          expect(foreign, `${route.method} ${path} (${param})`).toBe(nobody);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(20);
  });
});
