/**
 * Multiplexing, second half. The live layer hands every subscriber of a topic the same view object
 * per change; this envelop plugin executes a subscription's selection set once per view, document,
 * operation and variables, and gives every subscriber that same result object. So the cost of a
 * change grows with the number of distinct subscriptions it touches, not with the number of
 * subscribers. What remains per subscriber is the transport's own framing (each graphql-ws frame
 * carries that subscriber's operation id).
 *
 * With `stampChanges` (benchmarks only) every result carries `extensions.changedAt` and
 * `extensions.publishedAt`: when the status change it reports was announced and when the view was
 * computed, in epoch milliseconds with sub-millisecond precision.
 */
import {
  createSourceEventStream,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  execute,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { StatusView } from '../live/status-view.ts';
import { mapAsyncIterator } from '../util/map-async-iterator.ts';

export interface SharedResultsOptions {
  /** Add `extensions.changedAt` to every subscription result. @default false */
  readonly stampChanges?: boolean;
}

type Result = ExecutionResult | Promise<ExecutionResult>;

export function useSharedSubscriptionResults(options: SharedResultsOptions = {}): Plugin {
  const results = new WeakMap<object, Map<string, Result>>();
  const documentIds = new WeakMap<DocumentNode, number>();
  let nextDocumentId = 0;
  const documentId = (document: DocumentNode): number => {
    let id = documentIds.get(document);
    if (id === undefined) {
      id = nextDocumentId++;
      documentIds.set(document, id);
    }
    return id;
  };

  const run = (args: ExecutionArgs, payload: unknown): Result => {
    const result = execute({ ...args, rootValue: payload }) as Result;
    if (!options.stampChanges) return result;
    const { changedAt, publishedAt } = payload as Partial<StatusView>;
    const stamp = (r: ExecutionResult): ExecutionResult => ({
      ...r,
      extensions: { ...r.extensions, changedAt, publishedAt },
    });
    return result instanceof Promise ? result.then(stamp) : stamp(result);
  };

  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(async (args) => {
        const source = await createSourceEventStream(args);
        if (!(Symbol.asyncIterator in source)) return source as ExecutionResult;
        const key = `${documentId(args.document)}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? {})}`;
        return mapAsyncIterator(source, (payload: unknown) => {
          if (payload === null || typeof payload !== 'object') return run(args, payload);
          let byKey = results.get(payload);
          if (!byKey) {
            byKey = new Map();
            results.set(payload, byKey);
          }
          let result = byKey.get(key);
          if (!result) {
            result = run(args, payload);
            byKey.set(key, result);
          }
          return result;
        });
      });
    },
  };
}
