/**
 * Errors at the GraphQL edge. Every error a client sees carries `extensions.code`:
 * - domain errors keep their code (`BAD_USER_INPUT` with `argumentPath`, `NOT_FOUND`, ...);
 * - a document that does not parse: `GRAPHQL_PARSE_FAILED`;
 * - an argument literal of the wrong type or shape (unknown input field, missing required
 *   argument): `BAD_USER_INPUT`; any other invalid document: `GRAPHQL_VALIDATION_FAILED`;
 * - variables that do not fit their types: `BAD_USER_INPUT`;
 * - query limits (depth, aliases, tokens, cost; graphql-armor): `BAD_USER_INPUT`;
 * - bodies (see `request-body.ts`): `REQUEST_ENTITY_TOO_LARGE` (413, Yoga's), `BAD_REQUEST` (400), `RATE_LIMITED` (429);
 * - anything else is masked as `INTERNAL_SERVER_ERROR` with a generic message (logged in full).
 *
 * Over HTTP, `UNAUTHENTICATED` answers 401, `FORBIDDEN` 403, `RATE_LIMITED` 429 (with
 * `Retry-After`) and `STORE_UNAVAILABLE` 503; other codes keep GraphQL's usual statuses.
 */

import {
  type DocumentNode,
  GraphQLError,
  type GraphQLSchema,
  ProvidedRequiredArgumentsRule,
  ValuesOfCorrectTypeRule,
  VariablesInAllowedPositionRule,
  validate,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import {
  DeriverError,
  type ErrorCode,
  InvalidInputError,
  NotFoundError,
  RateLimitedError,
} from '../errors.ts';

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  RATE_LIMITED: 429,
  STORE_UNAVAILABLE: 503,
};

/** Extensions of a domain error: its code, what the client needs to act on it, and the HTTP status. */
function extensionsOf(error: DeriverError): Record<string, unknown> {
  const extra: Record<string, unknown> =
    error instanceof InvalidInputError
      ? { argumentPath: error.argumentPath, issues: error.issues }
      : error instanceof RateLimitedError && error.retryAfterSeconds !== null
        ? { retryAfterSeconds: error.retryAfterSeconds }
        : error instanceof NotFoundError && error.argument !== undefined
          ? { argumentPath: [error.argument] }
          : {};
  const status = HTTP_STATUS[error.code];
  if (status !== undefined) {
    const headers =
      error instanceof RateLimitedError && error.retryAfterSeconds !== null
        ? { 'retry-after': String(error.retryAfterSeconds) }
        : undefined;
    extra.http = { status, headers };
  }
  return { code: error.code, ...extra };
}

const INPUT_RULES = [ValuesOfCorrectTypeRule, ProvidedRequiredArgumentsRule, VariablesInAllowedPositionRule];

function withCode(error: GraphQLError, code: string, extra: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { ...error.extensions, code, ...extra },
  });
}

/** A client's mistake as the logs tell it: its code, the field it hit and the message (no document). */
export interface ClientErrorLog {
  readonly code: string;
  readonly field: string | undefined;
  readonly message: string;
}

/**
 * Builds the `maskError` function for Yoga's `maskedErrors`. `log` hears of server faults: masked
 * errors and an unavailable store; `logClient` of a client's mistakes (a domain error other than
 * an unavailable store), without the document or variables, which may carry user content.
 */
export function createMaskError(
  log: (error: unknown) => void,
  logClient: (entry: ClientErrorLog) => void = () => {},
) {
  return (error: unknown): Error => {
    const graphqlError = error instanceof GraphQLError ? error : undefined;
    const original = graphqlError?.originalError ?? error;
    if (original instanceof DeriverError) {
      if (original.code === 'STORE_UNAVAILABLE') log(original);
      else
        logClient({
          code: original.code,
          field: graphqlError?.path?.join('.'),
          message: original.message.slice(0, 300),
        });
      return new GraphQLError(original.message, {
        nodes: graphqlError?.nodes,
        path: graphqlError?.path,
        extensions: extensionsOf(original),
      });
    }
    if (graphqlError && (!graphqlError.originalError || graphqlError.originalError instanceof GraphQLError)) {
      // graphql-js's own execution errors (variables that do not coerce to their types) and Yoga's
      // request errors (403: CSRF prevention refused a request without the required header).
      if (graphqlError.extensions.code) return graphqlError;
      const status = (graphqlError.extensions.http as { status?: number } | undefined)?.status;
      return withCode(graphqlError, status === 403 ? 'FORBIDDEN' : 'BAD_USER_INPUT');
    }
    log(original);
    return new GraphQLError('Internal server error', {
      nodes: graphqlError?.nodes,
      path: graphqlError?.path,
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    });
  };
}

/** Gives parse and validation errors their codes (see the module comment). */
export function useErrorCodes(): Plugin {
  return {
    onParse() {
      return ({ result, replaceParseResult }) => {
        if (result instanceof GraphQLError && !result.extensions.code) {
          replaceParseResult(withCode(result, 'GRAPHQL_PARSE_FAILED'));
        }
      };
    },
    onValidate({ params }) {
      return ({ valid, result, setResult }) => {
        if (valid) return;
        const inputErrors = new Set(
          validate(params.schema as GraphQLSchema, params.documentAST as DocumentNode, INPUT_RULES).map(
            (e) => e.message,
          ),
        );
        setResult(
          result.map((e) =>
            e.extensions.code
              ? e
              : withCode(e, inputErrors.has(e.message) ? 'BAD_USER_INPUT' : 'GRAPHQL_VALIDATION_FAILED'),
          ),
        );
      };
    },
  };
}

/** Errors as a WebSocket client sees them: without the HTTP-only `extensions.http`. */
export function withoutHttpExtensions<E extends { readonly extensions?: Record<string, unknown> }>(
  errors: readonly E[],
): E[] {
  return errors.map((error) => {
    if (!error.extensions || !('http' in error.extensions)) return error;
    const { http: _http, ...extensions } = error.extensions;
    return error instanceof GraphQLError
      ? (new GraphQLError(error.message, {
          nodes: error.nodes,
          source: error.source,
          positions: error.positions,
          path: error.path,
          originalError: error.originalError,
          extensions,
        }) as unknown as E)
      : { ...error, extensions };
  });
}
