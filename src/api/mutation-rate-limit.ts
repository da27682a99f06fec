/**
 * Mutations per client are limited by a token bucket (see `token-bucket.ts`): a client over its
 * rate gets `RATE_LIMITED` (HTTP 429 with `Retry-After`) and nothing is executed. The client is the
 * key's scope when authentication is on, else the remote address. Queries and subscriptions are
 * not counted.
 */
import { GraphQLError, getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { TokenBuckets } from '../util/token-bucket.ts';
import type { ApiContext } from './context.ts';

export function useMutationRateLimit(buckets: TokenBuckets): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      if (getOperationAST(args.document, args.operationName)?.operation !== 'mutation') return;
      const taken = buckets.take((args.contextValue as unknown as ApiContext).clientId);
      if (taken.kind === 'allowed') return;
      const { retryAfterSeconds } = taken;
      setResultAndStopExecution({
        errors: [
          new GraphQLError(`too many mutations from this client; retry in ${retryAfterSeconds} s`, {
            extensions: {
              code: 'RATE_LIMITED',
              retryAfterSeconds,
              http: { status: 429, headers: { 'retry-after': String(retryAfterSeconds) } },
            },
          }),
        ],
      });
    },
  };
}
