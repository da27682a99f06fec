/**
 * The typed TypeScript client: live status and `waitForIdle` (the push-based replacement for
 * Honcho's `pollDeriverStatus`) over one graphql-ws WebSocket, opened on first use; queries and
 * mutations over HTTP.
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { type Client, createClient, type FormattedExecutionResult } from 'graphql-ws';
import NodeWebSocket from 'ws';
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
  GetPeerDocument,
  type GetPeerQuery,
  GetSessionDocument,
  type GetSessionQuery,
  RemoveSessionPeersDocument,
  type RemoveSessionPeersMutation,
  type RemoveSessionPeersMutationVariables,
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
} from './generated/graphql.ts';

export type DeriverStatus = WatchDeriverStatusSubscription['deriverStatus'];
export type DeriverStatusWithSessions = GetDeriverStatusQuery['deriverStatus'];
export type Session = NonNullable<GetSessionQuery['session']>;
export type Peer = NonNullable<GetPeerQuery['peer']>;
export type AddMessagesResult = AddMessagesMutation['addMessages'];

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
  /** Give up after this long and reject with `WaitForIdleTimeoutError`. @default no limit */
  readonly timeoutMs?: number;
  /** Abort the wait; rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface DeriverClientOptions {
  /** The server's GraphQL URL (`http(s)://` or `ws(s)://`, path `/graphql`). */
  readonly url: string;
  /** A JWT, sent as `connectionParams.authorization: "Bearer <token>"`. */
  readonly token?: string;
  /** WebSocket implementation. @default globalThis.WebSocket, else the `ws` package */
  readonly webSocketImpl?: unknown;
}

/** A GraphQL error answer, with the server's `extensions.code` of the first error. */
export class DeriverClientError extends Error {
  readonly code: string;
  readonly errors: readonly { message: string; extensions?: Record<string, unknown> }[];
  constructor(errors: readonly { message: string; extensions?: Record<string, unknown> }[]) {
    super(errors.map((e) => e.message).join('; ') || 'GraphQL request failed');
    this.name = 'DeriverClientError';
    this.errors = errors;
    this.code = String(errors[0]?.extensions?.code ?? 'UNKNOWN');
  }
  /** The offending argument path for `BAD_USER_INPUT` errors from the domain. */
  get argumentPath(): readonly (string | number)[] | undefined {
    return this.errors[0]?.extensions?.argumentPath as (string | number)[] | undefined;
  }
}

/** `waitForIdle` gave up: `lastStatus` is the last status received before the deadline. */
export class WaitForIdleTimeoutError extends Error {
  constructor(
    readonly timeoutMs: number,
    readonly lastStatus: DeriverStatus | null,
  ) {
    super(`the deriver did not become idle within ${timeoutMs} ms`);
    this.name = 'WaitForIdleTimeoutError';
  }
}

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
  addMessages(messages: AddMessagesMutationVariables['messages']): Promise<AddMessagesResult>;
  get(): Promise<Session | null>;
}

export interface DeriverClient {
  getDeriverStatus(filter?: StatusFilter): Promise<DeriverStatusWithSessions>;
  /** The current status at once, then every (coalesced) change. `return()` unsubscribes. */
  watchDeriverStatus(filter?: StatusFilter, options?: WatchOptions): StatusStream;
  /** Resolves with the status once nothing matching is pending or running (at once if so already). */
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
  getSession(id: string, workspaceId?: string): Promise<Session | null>;
  getPeer(id: string, workspaceId?: string): Promise<Peer | null>;
  /** Operations bound to one session. */
  session(sessionId: string, workspaceId?: string): SessionClient;
  /** Closes the WebSocket. */
  close(): Promise<void>;
}

export function createDeriverClient(options: DeriverClientOptions): DeriverClient {
  const httpUrl = options.url.replace(/^ws/, 'http');
  const client: Client = createClient({
    url: options.url.replace(/^http/, 'ws'),
    lazy: true,
    retryAttempts: 3,
    webSocketImpl: options.webSocketImpl ?? globalThis.WebSocket ?? NodeWebSocket,
    connectionParams: options.token ? { authorization: `Bearer ${options.token}` } : undefined,
  });

  function iterate<R, V extends Record<string, unknown>>(
    document: TypedDocumentNode<R, V>,
    variables: V,
  ): AsyncIterableIterator<R> {
    const source = client.iterate<R>({ query: print(document), variables });
    const unwrap = (result: FormattedExecutionResult<R, unknown>): R => {
      if (result.errors?.length) throw new DeriverClientError(result.errors as DeriverClientError['errors']);
      if (!result.data) throw new DeriverClientError([{ message: 'the server sent no data' }]);
      return result.data;
    };
    return {
      async next() {
        try {
          const step = await source.next();
          return step.done ? { done: true, value: undefined } : { done: false, value: unwrap(step.value) };
        } catch (error) {
          throw Array.isArray(error) ? new DeriverClientError(error) : error;
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
    const response = await fetch(httpUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      },
      body: JSON.stringify({ query: print(document), variables }),
    });
    let body: FormattedExecutionResult<R, unknown>;
    try {
      body = (await response.json()) as FormattedExecutionResult<R, unknown>;
    } catch {
      throw new DeriverClientError([
        {
          message: `the server answered HTTP ${response.status} without a GraphQL result`,
          extensions: { code: 'BAD_RESPONSE' },
        },
      ]);
    }
    if (body.errors?.length) throw new DeriverClientError(body.errors as DeriverClientError['errors']);
    if (!body.data) throw new DeriverClientError([{ message: 'the server sent no data' }]);
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

  async function waitForIdle(
    filter: StatusFilter,
    waitOptions: WaitForIdleOptions = {},
  ): Promise<DeriverStatus> {
    const stream = watch(filter, { untilIdle: true, coalesceMs: waitOptions.coalesceMs });
    let last: DeriverStatus | null = null;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      if (waitOptions.timeoutMs !== undefined) {
        timer = setTimeout(
          () => reject(new WaitForIdleTimeoutError(waitOptions.timeoutMs ?? 0, last)),
          waitOptions.timeoutMs,
        );
      }
      if (waitOptions.signal) {
        onAbort = () => reject(waitOptions.signal?.reason);
        if (waitOptions.signal.aborted) onAbort();
        else waitOptions.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    const drain = (async () => {
      for (;;) {
        const step = await stream.next();
        if (step.done) break;
        last = step.value;
      }
      if (!last) throw new DeriverClientError([{ message: 'the subscription ended without a status' }]);
      return last;
    })();
    try {
      return await Promise.race([drain, stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort) waitOptions.signal?.removeEventListener('abort', onAbort);
      drain.catch(() => {});
      await stream.return();
    }
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
    addMessages: async (variables) => (await request(AddMessagesDocument, variables)).addMessages,
    getSession: async (id, workspaceId) => (await request(GetSessionDocument, { id, workspaceId })).session,
    getPeer: async (id, workspaceId) => (await request(GetPeerDocument, { id, workspaceId })).peer,
    session(sessionId, workspaceId) {
      const scope = { sessionId, workspaceId };
      return {
        getDeriverStatus: async (filter = {}) => api.getDeriverStatus({ ...filter, ...scope }),
        watchDeriverStatus: (filter = {}, watchOptions) =>
          api.watchDeriverStatus({ ...filter, ...scope }, watchOptions),
        waitForIdle: (filter = {}, waitOptions) => api.waitForIdle({ ...filter, ...scope }, waitOptions),
        addMessages: (messages) => api.addMessages({ ...scope, messages }),
        get: () => api.getSession(sessionId, workspaceId),
      };
    },
    close: () => client.dispose() as Promise<void>,
  };
  return api;
}
