/**
 * Errors at the GraphQL edge. Every error a client sees carries `extensions.code`:
 * - domain errors keep their code (`BAD_USER_INPUT` with `argumentPath`, `NOT_FOUND`, ...);
 * - a document that does not parse: `GRAPHQL_PARSE_FAILED`;
 * - an argument literal of the wrong type or shape (unknown input field, missing required
 *   argument): `BAD_USER_INPUT`; any other invalid document: `GRAPHQL_VALIDATION_FAILED`;
 * - variables that do not fit their types: `BAD_USER_INPUT`;
 * - query limits (depth, aliases, tokens, cost; graphql-armor): `BAD_USER_INPUT`;
 * - an HTTP body over the size limit: `PAYLOAD_TOO_LARGE` (status 413);
 * - anything else is masked as `INTERNAL_SERVER_ERROR` with a generic message (logged in full).
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
import { DeriverError, InvalidInputError } from '../errors.ts';

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

/** Builds the `maskError` function for Yoga's `maskedErrors`. */
export function createMaskError(log: (error: unknown) => void) {
  return (error: unknown): Error => {
    const graphqlError = error instanceof GraphQLError ? error : undefined;
    const original = graphqlError?.originalError ?? error;
    if (original instanceof DeriverError) {
      const extra =
        original instanceof InvalidInputError
          ? { argumentPath: original.argumentPath, issues: original.issues }
          : {};
      return new GraphQLError(original.message, {
        nodes: graphqlError?.nodes,
        path: graphqlError?.path,
        extensions: { code: original.code, ...extra },
      });
    }
    if (graphqlError && (!graphqlError.originalError || graphqlError.originalError instanceof GraphQLError)) {
      // graphql-js's own execution errors: variables that do not coerce to their types.
      return graphqlError.extensions.code ? graphqlError : withCode(graphqlError, 'BAD_USER_INPUT');
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

/** Refuses request bodies over `maxBytes` (by `Content-Length`) with 413 before reading them. */
export function useBodyLimit(maxBytes: number): Plugin {
  return {
    onRequest({ request, endResponse, fetchAPI }) {
      const length = Number(request.headers.get('content-length') ?? 0);
      if (length <= maxBytes) return;
      const body = {
        errors: [
          {
            message: `request body of ${length} bytes is larger than the limit of ${maxBytes} bytes`,
            extensions: { code: 'PAYLOAD_TOO_LARGE' },
          },
        ],
      };
      endResponse(
        new fetchAPI.Response(JSON.stringify(body), {
          status: 413,
          headers: { 'content-type': 'application/json' },
        }),
      );
    },
  };
}
