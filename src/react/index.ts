/**
 * React hooks for live deriver status (`deriver-live/react`): one WebSocket per provider, shared
 * by every hook under it, reconnecting on its own; each hook re-subscribes after a reconnect and
 * gets the current state at once (the server always sends it first).
 *
 * Connection states, per provider: `idle` (no hook subscribed yet; lazy) -> `connecting` ->
 * `connected`; a drop -> `reconnecting` -> `connected` again (backoff 250 ms doubling to 5 s, for
 * ever); a refusal the server means (a bad key: close codes 4400-4499) -> `closed`, and the hooks
 * carry the error. React is a peer dependency; nothing here runs on the server.
 */
import { print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import {
  createContext,
  createElement,
  type ReactNode,
  useContext,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
} from 'react';
import { DeriverClientError, type GraphQLErrorEntry, isRefusal, toClientError } from '../client/errors.ts';
import {
  type TaskType,
  WatchDeriverStatusDocument,
  type WatchDeriverStatusSubscription,
  WatchMessageDerivationDocument,
  type WatchMessageDerivationSubscription,
} from '../client/generated/graphql.ts';

export { DeriverClientError } from '../client/errors.ts';

export type DeriverStatus = WatchDeriverStatusSubscription['deriverStatus'];
export type MessagesDerivation = WatchMessageDerivationSubscription['messageDerivation'];
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

const STATUS_QUERY = print(WatchDeriverStatusDocument);
const DERIVATION_QUERY = print(WatchMessageDerivationDocument);

/** One provider's socket and its state. */
class LiveConnection {
  readonly client: Client;
  private state: ConnectionState = 'idle';
  private everConnected = false;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly url: string,
    token: string | undefined,
  ) {
    const key = token?.replace(/^\s*bearer\s+/i, '').trim();
    this.client = createClient({
      url: url.replace(/^http/, 'ws'),
      lazy: true,
      retryAttempts: Number.POSITIVE_INFINITY,
      retryWait: (retries) =>
        new Promise((resolve) =>
          setTimeout(resolve, Math.min(5_000, 250 * 2 ** retries) * (0.5 + Math.random())),
        ),
      // A refused key stays refused: retrying only hides the error.
      shouldRetry: (event) => !isRefusal(event),
      connectionParams: key ? { authorization: `Bearer ${key}` } : undefined,
      on: {
        connecting: () => this.set(this.everConnected ? 'reconnecting' : 'connecting'),
        connected: () => {
          this.everConnected = true;
          this.set('connected');
        },
        closed: (event) =>
          this.set(isRefusal(event) ? 'closed' : this.everConnected ? 'reconnecting' : 'idle'),
      },
    });
  }

  private set(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    for (const listener of this.listeners) listener();
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly getState = (): ConnectionState => this.state;

  dispose(): void {
    void this.client.dispose();
  }
}

interface ProviderValue {
  readonly connection: LiveConnection;
  readonly workspaceId: string | undefined;
}

const LiveContext = createContext<ProviderValue | null>(null);

export interface DeriverLiveProviderProps {
  /** The server's GraphQL URL (`http(s)://host/graphql` or `ws(s)://`). */
  readonly url: string;
  /** A key (a JWT) when the server runs with auth: a browser should get a session or peer key. */
  readonly token?: string;
  /** The workspace of every hook below that names none. @default the server's "default" */
  readonly workspaceId?: string;
  readonly children?: ReactNode;
}

/** One WebSocket for every hook below it; a new `url` or `token` opens a new one. */
export function DeriverLiveProvider({ url, token, workspaceId, children }: DeriverLiveProviderProps) {
  const connection = useMemo(() => new LiveConnection(url, token), [url, token]);
  useEffect(() => () => connection.dispose(), [connection]);
  const value = useMemo(() => ({ connection, workspaceId }), [connection, workspaceId]);
  return createElement(LiveContext.Provider, { value }, children);
}

function useLive(): ProviderValue {
  const value = useContext(LiveContext);
  if (!value) throw new Error('deriver-live/react hooks need a <DeriverLiveProvider url=...> above them');
  return value;
}

/** The provider's connection state, re-rendering when it changes. */
export function useDeriverConnection(): ConnectionState {
  const { connection } = useLive();
  return useSyncExternalStore(connection.subscribe, connection.getState, connection.getState);
}

interface Live<T> {
  /** The latest state the server pushed; `null` until the first. Kept across a reconnect. */
  readonly data: T | null;
  readonly error: DeriverClientError | null;
  /** The server completed the subscription (idle reached, messages derived). */
  readonly done: boolean;
}

/** One subscription's latest data; re-subscribes when `variables` (compared as JSON) change. */
function useSubscription<T>(
  query: string,
  variables: Record<string, unknown>,
  /** The subscription's root field (its data is `data[field]`). */
  field: 'deriverStatus' | 'messageDerivation',
  enabled: boolean,
): Live<T> & { readonly connection: ConnectionState } {
  const { connection, workspaceId } = useLive();
  const state = useDeriverConnection();
  const key = JSON.stringify({ workspaceId, ...variables });
  const [live, setLive] = useState<Live<T> & { key: string }>({ data: null, error: null, done: false, key });
  useEffect(() => {
    setLive({ data: null, error: null, done: false, key });
    if (!enabled) return;
    return connection.client.subscribe<Record<string, unknown>>(
      { query, variables: JSON.parse(key) as Record<string, unknown> },
      {
        next: (result) =>
          setLive((previous) =>
            result.errors?.length
              ? { ...previous, error: DeriverClientError.fromGraphQL(result.errors as GraphQLErrorEntry[]) }
              : { ...previous, data: (result.data?.[field] ?? null) as T | null, error: null },
          ),
        error: (error) =>
          setLive((previous) => ({ ...previous, error: toClientError(error, connection.url) })),
        complete: () => setLive((previous) => ({ ...previous, done: previous.error === null })),
      },
    );
  }, [connection, query, field, key, enabled]);
  // Until the effect runs for a new key, do not show the previous filter's state.
  const current = live.key === key ? live : { data: null, error: null, done: false };
  return { data: current.data, error: current.error, done: current.done, connection: state };
}

export interface StatusFilter {
  readonly workspaceId?: string;
  readonly sessionId?: string;
  readonly observerId?: string;
  readonly senderId?: string;
}

export interface UseDeriverStatusOptions {
  /** Coalescing window, 0 (every change) to 10000 ms. @default the server's */
  readonly coalesceMs?: number;
  /** Subscribe only while true (e.g. until the user opens a panel). @default true */
  readonly enabled?: boolean;
}

export interface DeriverStatusState {
  /** The latest counts; `null` until the first arrive. */
  readonly status: DeriverStatus | null;
  readonly error: DeriverClientError | null;
  readonly connection: ConnectionState;
}

/**
 * Live counts for a filter (AND of the ids given): the current status at once, then every change
 * the server pushes; after a dropped connection the hook re-subscribes and the first new status
 * replaces the last one it had.
 */
export function useDeriverStatus(
  filter: StatusFilter = {},
  options: UseDeriverStatusOptions = {},
): DeriverStatusState {
  const live = useSubscription<DeriverStatus>(
    STATUS_QUERY,
    { ...filter, coalesceMs: options.coalesceMs },
    'deriverStatus',
    options.enabled ?? true,
  );
  return { status: live.data, error: live.error, connection: live.connection };
}

export interface WaitForIdleState extends DeriverStatusState {
  /** Nothing matching is pending or running (the server completed the wait). */
  readonly idle: boolean;
}

/**
 * Waits for nothing matching the filter to be pending or running (pushed, not polled); `idle`
 * turns true once it is. A session or peer that does not exist is an `error` (`NOT_FOUND`).
 */
export function useWaitForIdle(
  filter: StatusFilter = {},
  options: UseDeriverStatusOptions = {},
): WaitForIdleState {
  const live = useSubscription<DeriverStatus>(
    STATUS_QUERY,
    { ...filter, coalesceMs: options.coalesceMs, untilIdle: true },
    'deriverStatus',
    options.enabled ?? true,
  );
  return { status: live.data, error: live.error, connection: live.connection, idle: live.done };
}

export interface MessageDerivationState {
  readonly derivation: MessagesDerivation | null;
  /** Every task of these messages (for the observer, if given) has finished. */
  readonly done: boolean;
  readonly error: DeriverClientError | null;
  readonly connection: ConnectionState;
}

/** What the tasks of your messages are doing, live; `done` once they all finished. */
export function useMessageDerivation(
  messageIds: readonly string[],
  options: {
    readonly observerId?: string;
    readonly taskTypes?: readonly TaskType[];
    readonly workspaceId?: string;
    readonly enabled?: boolean;
  } = {},
): MessageDerivationState {
  const { enabled = true, ...variables } = options;
  const live = useSubscription<MessagesDerivation>(
    DERIVATION_QUERY,
    { ...variables, messageIds },
    'messageDerivation',
    enabled && messageIds.length > 0,
  );
  return { derivation: live.data, done: live.done, error: live.error, connection: live.connection };
}
