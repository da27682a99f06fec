/**
 * The typed TypeScript client: live status and `waitForIdle` (the push-based replacement for
 * Honcho's `pollDeriverStatus`) over one graphql-ws WebSocket, opened on first use; queries and
 * mutations over HTTP.
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { type Client, createClient, type FormattedExecutionResult } from 'graphql-ws';
import NodeWebSocket from 'ws';
import { DeriverClientError, type GraphQLErrorEntry, isRefusal, toClientError, urlHint } from './errors.ts';
import {
  AddMessagesDocument,
  type AddMessagesMutation,
  type AddMessagesMutationVariables,
  CreateKeyDocument,
  type CreateKeyMutation,
  type CreateKeyMutationVariables,
  GetDeriverStatusDocument,
  type GetDeriverStatusQuery,
  type GetDeriverStatusQueryVariables,
  GetMessageDerivationDocument,
  type GetMessageDerivationQuery,
  GetPeerDocument,
  type GetPeerQuery,
  GetSessionDocument,
  type GetSessionQuery,
  RemoveSessionPeersDocument,
  type RemoveSessionPeersMutation,
  type RemoveSessionPeersMutationVariables,
  type TaskType,
  UpsertPeerDocument,
  type UpsertPeerMutation,
  type UpsertPeerMutationVariables,
  UpsertSessionDocument,
  type UpsertSessionMutation,
  type UpsertSessionMutationVariables,
  UpsertWorkspaceDocument,
  type UpsertWorkspaceMutation,
  type UpsertWorkspaceMutationVariables,
  WatchDeriverStatusDocument,
  type WatchDeriverStatusSubscription,
  WatchMessageDerivationDocument,
} from './generated/graphql.ts';

export type DeriverStatus = WatchDeriverStatusSubscription['deriverStatus'];
export type DeriverStatusWithSessions = GetDeriverStatusQuery['deriverStatus'];
export type Session = NonNullable<GetSessionQuery['session']>;
export type Peer = NonNullable<GetPeerQuery['peer']>;
/** What the tasks of some messages are doing (`messageDerivation`), in total and per message. */
export type MessagesDerivation = GetMessageDerivationQuery['messageDerivation'];

/** Which tasks of the messages to wait for, and how long. */
export interface WaitForMessagesOptions {
  /** Only this observer's tasks (what it learned from them); summaries have no observer. */
  readonly observerId?: string;
  /** Only these task types. @default every type */
  readonly taskTypes?: readonly TaskType[];
  readonly workspaceId?: string;
  /** Give up after this long (`DeriverClientError` code `TIMEOUT`). */
  readonly timeoutMs?: number;
  /** Give up when it aborts (code `ABORTED`). */
  readonly signal?: AbortSignal;
}

/**
 * The messages stored and their tasks, and `waitForDerivation(options)`: resolves once every task
 * these messages created (for `options.observerId`, or all) is finished, however busy the queue is.
 */
export type AddMessagesResult = AddMessagesMutation['addMessages'] & {
  waitForDerivation(options?: Omit<WaitForMessagesOptions, 'workspaceId'>): Promise<MessagesDerivation>;
};

/** Filters combine with AND; all are optional. `workspaceId` omitted means "default". */
export interface StatusFilter {
  readonly workspaceId?: string;
  readonly observerId?: string;
  readonly senderId?: string;
  readonly sessionId?: string;
}

/** A live status stream; `return()` (or leaving a `for await` loop) unsubscribes. */
export interface StatusStream extends AsyncIterableIterator<DeriverStatus> {
  return(): Promise<IteratorResult<DeriverStatus>>;
}

export interface WatchOptions {
  /** Coalescing window for this subscription, 0 (every change) to 10000 ms. @default the server's */
  readonly coalesceMs?: number;
}

export interface WaitForIdleOptions extends WatchOptions {
  /** Give up after this long and reject with `WaitForIdleTimeoutError` (code `TIMEOUT`). @default no limit */
  readonly timeoutMs?: number;
  /** Abort the wait; rejects with code `ABORTED`, the signal's reason as `cause`. */
  readonly signal?: AbortSignal;
}

export interface DeriverClientOptions {
  /** The server's GraphQL URL (`http(s)://` or `ws(s)://`, path `/graphql`). */
  readonly url: string;
  /** A key (a JWT), with or without its `Bearer ` prefix; sent as `Authorization: Bearer <key>`. */
  readonly token?: string;
  /** The workspace of every call that names none. @default "default" (the server's) */
  readonly workspaceId?: string;
  /**
   * WebSocket implementation. @default the `ws` package in Node.js (its errors say why a connection
   * failed, e.g. the HTTP status of a refused upgrade; Node's built-in WebSocket does not), else
   * `globalThis.WebSocket`
   */
  readonly webSocketImpl?: unknown;
}

/** `waitForIdle` gave up (`code` `TIMEOUT`): `lastStatus` is the last status received before the deadline. */
export class WaitForIdleTimeoutError extends DeriverClientError {
  constructor(
    readonly timeoutMs: number,
    readonly lastStatus: DeriverStatus | null,
  ) {
    super(`the deriver did not become idle within ${timeoutMs} ms`, 'TIMEOUT');
    this.name = 'WaitForIdleTimeoutError';
  }
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** The same operations, bound to one session. */
export interface SessionClient {
  getDeriverStatus(filter?: Omit<StatusFilter, 'sessionId' | 'workspaceId'>): Promise<DeriverStatus>;
  watchDeriverStatus(
    filter?: Omit<StatusFilter, 'sessionId' | 'workspaceId'>,
    options?: WatchOptions,
  ): StatusStream;
  waitForIdle(
    filter?: Omit<StatusFilter, 'sessionId' | 'workspaceId'>,
    options?: WaitForIdleOptions,
  ): Promise<DeriverStatus>;
  addMessages(
    messages: AddMessagesMutationVariables['messages'],
    options?: Pick<AddMessagesMutationVariables, 'notifyWhenDerived'>,
  ): Promise<AddMessagesResult>;
  get(): Promise<Session | null>;
}

export interface DeriverClient {
  getDeriverStatus(filter?: StatusFilter): Promise<DeriverStatusWithSessions>;
  /** The current status at once, then every (coalesced) change. `return()` unsubscribes. */
  watchDeriverStatus(filter?: StatusFilter, options?: WatchOptions): StatusStream;
  /**
   * Resolves with the status once nothing matching is pending or running (at once if so already).
   * A session or peer in the filter that does not exist rejects with `NOT_FOUND`, never "idle".
   */
  waitForIdle(filter?: StatusFilter, options?: WaitForIdleOptions): Promise<DeriverStatus>;
  upsertWorkspace(
    variables: UpsertWorkspaceMutationVariables,
  ): Promise<UpsertWorkspaceMutation['upsertWorkspace']>;
  upsertPeer(variables: UpsertPeerMutationVariables): Promise<UpsertPeerMutation['upsertPeer']>;
  /**
   * Mints a key for one scope (admin, a workspace, a session or a peer of it); needs a client made
   * with an admin or workspace key. Rejects with `DeriverClientError` (`FORBIDDEN`, `AUTH_DISABLED`).
   */
  createKey(variables: CreateKeyMutationVariables): Promise<CreateKeyMutation['createKey']>;
  upsertSession(variables: UpsertSessionMutationVariables): Promise<UpsertSessionMutation['upsertSession']>;
  removeSessionPeers(
    variables: RemoveSessionPeersMutationVariables,
  ): Promise<RemoveSessionPeersMutation['removeSessionPeers']>;
  addMessages(variables: AddMessagesMutationVariables): Promise<AddMessagesResult>;
  /** What the tasks these messages created are doing now (for one observer, or all). */
  getMessageDerivation(
    messageIds: readonly string[],
    options?: WaitForMessagesOptions,
  ): Promise<MessagesDerivation>;
  /**
   * Resolves once every task these messages created (for `options.observerId`, or all) is finished:
   * "has what I sent been derived?", not "is the whole queue empty?". An unknown message id rejects
   * with `NOT_FOUND`.
   */
  waitForMessages(
    messageIds: readonly string[],
    options?: WaitForMessagesOptions,
  ): Promise<MessagesDerivation>;
  getSession(id: string, workspaceId?: string): Promise<Session | null>;
  getPeer(id: string, workspaceId?: string): Promise<Peer | null>;
  /** Operations bound to one session. */
  session(sessionId: string, workspaceId?: string): SessionClient;
  /** Closes the WebSocket. */
  close(): Promise<void>;
}

export function createDeriverClient(options: DeriverClientOptions): DeriverClient {
  const httpUrl = options.url.replace(/^ws/, 'http');
  const token = options.token?.replace(/^\s*bearer\s+/i, '').trim();
  const authorization = token ? `Bearer ${token}` : undefined;
  const client: Client = createClient({
    url: options.url.replace(/^http/, 'ws'),
    lazy: true,
    retryAttempts: 3,
    // A refused key or a bad request stays refused: retrying only delays the error (4400-4499).
    shouldRetry: (event) => !isRefusal(event),
    webSocketImpl: options.webSocketImpl ?? (isNode ? NodeWebSocket : globalThis.WebSocket),
    connectionParams: authorization ? { authorization } : undefined,
  });
  /** `variables` with the client's default workspace when they name none. */
  const inWorkspace = <V extends object>(variables: V): V =>
    options.workspaceId === undefined || (variables as { workspaceId?: unknown }).workspaceId != null
      ? variables
      : { ...variables, workspaceId: options.workspaceId };

  function iterate<R, V extends Record<string, unknown>>(
    document: TypedDocumentNode<R, V>,
    variables: V,
  ): AsyncIterableIterator<R> {
    const source = client.iterate<R>({ query: print(document), variables: inWorkspace(variables) });
    const unwrap = (result: FormattedExecutionResult<R, unknown>): R => {
      if (result.errors?.length) throw DeriverClientError.fromGraphQL(result.errors as GraphQLErrorEntry[]);
      if (!result.data) throw new DeriverClientError('the server sent no data', 'BAD_RESPONSE');
      return result.data;
    };
    return {
      async next() {
        try {
          const step = await source.next();
          return step.done ? { done: true, value: undefined } : { done: false, value: unwrap(step.value) };
        } catch (error) {
          throw toClientError(error, options.url);
        }
      },
      async return() {
        await source.return?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * Queries and mutations go over HTTP: a call may carry up to 100 messages of 65,535 characters,
   * far more than the WebSocket's small `maxPayload`. Subscriptions use the WebSocket.
   */
  async function request<R, V extends Record<string, unknown>>(
    document: TypedDocumentNode<R, V>,
    variables: V,
  ): Promise<R> {
    let response: Response;
    try {
      response = await fetch(httpUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...(authorization ? { authorization } : {}),
        },
        body: JSON.stringify({ query: print(document), variables: inWorkspace(variables) }),
      });
    } catch (error) {
      throw toClientError(error, httpUrl);
    }
    let body: FormattedExecutionResult<R, unknown>;
    try {
      body = (await response.json()) as FormattedExecutionResult<R, unknown>;
    } catch (error) {
      throw new DeriverClientError(
        `the server at ${httpUrl} answered HTTP ${response.status} without a GraphQL result${urlHint(httpUrl)}`,
        'BAD_RESPONSE',
        { cause: error },
      );
    }
    if (body.errors?.length) throw DeriverClientError.fromGraphQL(body.errors as GraphQLErrorEntry[]);
    if (!body.data) throw new DeriverClientError('the server sent no data', 'BAD_RESPONSE');
    return body.data;
  }

  function watch(filter: StatusFilter, watchOptions: WatchOptions & { untilIdle?: boolean }): StatusStream {
    const source = iterate(WatchDeriverStatusDocument, {
      ...filter,
      untilIdle: watchOptions.untilIdle ?? false,
      coalesceMs: watchOptions.coalesceMs,
    });
    return {
      async next(): Promise<IteratorResult<DeriverStatus>> {
        const step = await source.next();
        return step.done ? step : { done: false, value: step.value.deriverStatus };
      },
      async return(): Promise<IteratorResult<DeriverStatus>> {
        await source.return?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * The last item of `stream` once it ends, or a rejection on `timeoutMs` (`onTimeout` with the
   * last item seen) or on `signal` (`ABORTED`); the stream is closed either way.
   */
  async function lastOf<T>(
    stream: AsyncIterator<T>,
    what: string,
    limits: { readonly timeoutMs?: number | undefined; readonly signal?: AbortSignal | undefined },
    onTimeout: (timeoutMs: number, last: T | null) => Error,
  ): Promise<T> {
    let last: T | null = null;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      if (limits.timeoutMs !== undefined) {
        const timeoutMs = limits.timeoutMs;
        timer = setTimeout(() => reject(onTimeout(timeoutMs, last)), timeoutMs);
      }
      if (limits.signal) {
        onAbort = () =>
          reject(new DeriverClientError(`${what} was aborted`, 'ABORTED', { cause: limits.signal?.reason }));
        if (limits.signal.aborted) onAbort();
        else limits.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    const drain = (async () => {
      for (;;) {
        const step = await stream.next();
        if (step.done) break;
        last = step.value;
      }
      if (last === null)
        throw new DeriverClientError('the subscription ended without a result', 'BAD_RESPONSE');
      return last;
    })();
    try {
      return await Promise.race([drain, stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort) limits.signal?.removeEventListener('abort', onAbort);
      drain.catch(() => {});
      await stream.return?.();
    }
  }

  function waitForIdle(filter: StatusFilter, waitOptions: WaitForIdleOptions = {}): Promise<DeriverStatus> {
    const stream = watch(filter, { untilIdle: true, coalesceMs: waitOptions.coalesceMs });
    return lastOf(stream, 'waitForIdle', waitOptions, (ms, last) => new WaitForIdleTimeoutError(ms, last));
  }

  const derivationVariables = (messageIds: readonly string[], o: WaitForMessagesOptions) => ({
    workspaceId: o.workspaceId,
    messageIds: [...messageIds],
    observerId: o.observerId,
    taskTypes: o.taskTypes ? [...o.taskTypes] : undefined,
  });

  async function waitForMessages(
    messageIds: readonly string[],
    waitOptions: WaitForMessagesOptions = {},
  ): Promise<MessagesDerivation> {
    const source = iterate(WatchMessageDerivationDocument, derivationVariables(messageIds, waitOptions));
    const stream: AsyncIterator<MessagesDerivation> = {
      next: async () => {
        const step = await source.next();
        return step.done ? step : { done: false, value: step.value.messageDerivation };
      },
      return: async () => {
        await source.return?.();
        return { done: true, value: undefined };
      },
    };
    return lastOf(
      stream,
      'waitForMessages',
      waitOptions,
      (ms) => new DeriverClientError(`the messages were not derived within ${ms} ms`, 'TIMEOUT'),
    );
  }

  /** An `addMessages` result that can be waited on (`waitForDerivation`, not enumerable). */
  function waitable(result: AddMessagesMutation['addMessages'], workspaceId: string | null | undefined) {
    const ids = result.messages.map((m) => m.id);
    return Object.defineProperty(result, 'waitForDerivation', {
      enumerable: false,
      value: (o: WaitForMessagesOptions = {}) =>
        waitForMessages(ids, { ...o, workspaceId: workspaceId ?? undefined }),
    }) as AddMessagesResult;
  }

  const api: DeriverClient = {
    async getDeriverStatus(filter = {}) {
      return (await request(GetDeriverStatusDocument, filter as GetDeriverStatusQueryVariables))
        .deriverStatus;
    },
    watchDeriverStatus: (filter = {}, watchOptions = {}) => watch(filter, watchOptions),
    waitForIdle: (filter = {}, waitOptions) => waitForIdle(filter, waitOptions),
    upsertWorkspace: async (variables) => (await request(UpsertWorkspaceDocument, variables)).upsertWorkspace,
    upsertPeer: async (variables) => (await request(UpsertPeerDocument, variables)).upsertPeer,
    createKey: async (variables) => (await request(CreateKeyDocument, variables)).createKey,
    upsertSession: async (variables) => (await request(UpsertSessionDocument, variables)).upsertSession,
    removeSessionPeers: async (variables) =>
      (await request(RemoveSessionPeersDocument, variables)).removeSessionPeers,
    addMessages: async (variables) =>
      waitable((await request(AddMessagesDocument, variables)).addMessages, variables.workspaceId),
    getMessageDerivation: async (messageIds, o = {}) =>
      (await request(GetMessageDerivationDocument, derivationVariables(messageIds, o))).messageDerivation,
    waitForMessages: (messageIds, o) => waitForMessages(messageIds, o),
    getSession: async (id, workspaceId) => (await request(GetSessionDocument, { id, workspaceId })).session,
    getPeer: async (id, workspaceId) => (await request(GetPeerDocument, { id, workspaceId })).peer,
    session(sessionId, workspaceId) {
      const scope = { sessionId, workspaceId };
      return {
        getDeriverStatus: async (filter = {}) => api.getDeriverStatus({ ...filter, ...scope }),
        watchDeriverStatus: (filter = {}, watchOptions) =>
          api.watchDeriverStatus({ ...filter, ...scope }, watchOptions),
        waitForIdle: (filter = {}, waitOptions) => api.waitForIdle({ ...filter, ...scope }, waitOptions),
        addMessages: (messages, options) => api.addMessages({ ...options, ...scope, messages }),
        get: () => api.getSession(sessionId, workspaceId),
      };
    },
    close: () => client.dispose() as Promise<void>,
  };
  return api;
}
