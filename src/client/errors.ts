/**
 * The client's one error class and how a transport's failures become it: shared by the typed
 * client (`client.ts`) and the React hooks (`../react`), which must not import Node's `ws`.
 */

/** One GraphQL error as the server sent it. */
export interface GraphQLErrorEntry {
  readonly message: string;
  readonly extensions?: Record<string, unknown>;
}

/**
 * Every way a call can fail, as one class: the server's `extensions.code` (`BAD_USER_INPUT`,
 * `NOT_FOUND`, `UNAUTHENTICATED`, `FORBIDDEN`, `RATE_LIMITED`, ...) for a GraphQL error, and the
 * client's own codes: `NETWORK` (the server could not be reached, or the connection failed),
 * `BAD_RESPONSE` (an answer that is not GraphQL: often a URL without `/graphql`), `TIMEOUT`
 * (`waitForIdle`'s `timeoutMs`), `ABORTED` (its `signal`). `cause` holds what the transport threw.
 */
export class DeriverClientError extends Error {
  readonly code: string;
  readonly errors: readonly GraphQLErrorEntry[];
  constructor(
    message: string,
    code: string,
    details: { errors?: readonly GraphQLErrorEntry[]; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'DeriverClientError';
    this.code = code;
    this.errors = details.errors ?? [];
  }
  /** A GraphQL error answer: the messages joined, the first error's code. */
  static fromGraphQL(errors: readonly GraphQLErrorEntry[]): DeriverClientError {
    return new DeriverClientError(
      errors.map((e) => e.message).join('; ') || 'GraphQL request failed',
      String(errors[0]?.extensions?.code ?? 'INTERNAL_SERVER_ERROR'),
      { errors },
    );
  }
  /** The argument at fault, for `BAD_USER_INPUT` and `NOT_FOUND` errors that name one. */
  get argumentPath(): readonly (string | number)[] | undefined {
    return this.errors[0]?.extensions?.argumentPath as (string | number)[] | undefined;
  }
}

/** Close codes of the WebSocket protocol, as the client's error codes. */
const CLOSE_CODES: Record<number, string> = {
  4400: 'BAD_REQUEST',
  4401: 'UNAUTHENTICATED',
  4403: 'UNAUTHENTICATED',
  4408: 'TIMEOUT',
  4429: 'RATE_LIMITED',
  4500: 'INTERNAL_SERVER_ERROR',
};

/** A close the server meant (a `44xx` code): the same request would be refused again. */
export const isRefusal = (event: unknown): boolean => {
  const { code, message } = (event ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'number') return code >= 4400 && code < 4500 && code !== 4408;
  // The HTTP upgrade itself refused (`ws`'s "Unexpected server response: 404"): a wrong URL.
  return typeof message === 'string' && /Unexpected server response: 4\d\d/.test(message);
};

/** A hint for a URL that is probably not the GraphQL endpoint. */
export const urlHint = (url: string): string =>
  /\/graphql\/?$/.test(new URL(url).pathname)
    ? ''
    : ` (the GraphQL endpoint is ${new URL('/graphql', url).href}: is the URL missing "/graphql"?)`;

/** Whatever a transport threw (a `TypeError` from fetch, a `CloseEvent`, an `ErrorEvent`, GraphQL errors) as a `DeriverClientError`. */
export function toClientError(error: unknown, url: string): DeriverClientError {
  if (error instanceof DeriverClientError) return error;
  if (Array.isArray(error)) return DeriverClientError.fromGraphQL(error as GraphQLErrorEntry[]);
  const event = error as {
    type?: unknown;
    code?: unknown;
    reason?: unknown;
    message?: unknown;
    error?: unknown;
  };
  if (typeof event?.code === 'number' && typeof event.reason === 'string') {
    // A CloseEvent: the server closed the socket, with a code and a reason a person can read.
    const code = CLOSE_CODES[event.code] ?? 'NETWORK';
    const reason = event.reason || `the connection closed (code ${event.code})`;
    return new DeriverClientError(code === 'NETWORK' ? `${reason}${urlHint(url)}` : reason, code, {
      cause: error,
    });
  }
  if (error instanceof TypeError || event?.type === 'error') {
    // fetch's "fetch failed" (the reason is in `cause`), or a WebSocket's ErrorEvent.
    const inner =
      (error as { cause?: { message?: string; code?: string } }).cause ??
      (event.error as { message?: string } | undefined);
    const detail = inner?.message ?? (typeof event.message === 'string' ? event.message : String(error));
    const refused = /Unexpected server response: (\d+)/.exec(detail);
    return new DeriverClientError(
      refused
        ? `the server at ${url} refused the WebSocket with HTTP ${refused[1]}${urlHint(url)}`
        : `could not reach the server at ${url}${detail ? `: ${detail}` : ''}${urlHint(url)}`,
      'NETWORK',
      { cause: error },
    );
  }
  return new DeriverClientError(
    error instanceof Error ? error.message : String(error),
    'INTERNAL_CLIENT_ERROR',
    {
      cause: error,
    },
  );
}
