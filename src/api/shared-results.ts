/**
 * Multiplexing, second half. The live layer hands every subscriber of a topic the same view object
 * per change; this envelop plugin executes a subscription's selection set once per view, document,
 * operation and variables, and gives every subscriber that same result object. So the cost of a
 * change grows with the number of distinct subscriptions it touches, not with the number of
 * subscribers. What remains per subscriber is the transport's own framing (each graphql-ws frame
 * carries that subscriber's operation id).
 *
 * The WebSocket server calls the shared subscribe function directly (masking errors itself) and
 * reads its ready stream synchronously, so events skip envelop's per-event result wrapping and
 * every promise; SSE goes through Yoga with the plugin (async iteration of the same stream).
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
  type GraphQLError,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { StatusView } from '../live/status-view.ts';
import { isReadyStream, mapReadyStream, type ReadyStream } from '../util/ready-stream.ts';

export interface SharedResultsOptions {
  /** Add `extensions.changedAt` and `extensions.publishedAt` to every result. @default false */
  readonly stampChanges?: boolean;
  /** Applied to every error of a result (the GraphQL edge's masking). @default identity */
  readonly maskError?: (error: unknown) => Error;
}

type Result = ExecutionResult | Promise<ExecutionResult>;

/**
 * A subscribe function whose events share one execution result per view, document and variables:
 * a ready stream of results (a result is a promise only when execution was asynchronous), or the
 * result that refused the subscription.
 */
export type SharedSubscribe = (args: ExecutionArgs) => Promise<ReadyStream<Result> | ExecutionResult>;

export function createSharedSubscribe(options: SharedResultsOptions = {}): SharedSubscribe {
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

  const finish = (r: ExecutionResult, payload: unknown): ExecutionResult => {
    let out = r;
    if (r.errors && options.maskError) {
      const mask = options.maskError;
      out = { ...out, errors: r.errors.map((e) => mask(e) as GraphQLError) };
    }
    if (options.stampChanges) {
      const { changedAt, publishedAt } = (payload ?? {}) as Partial<StatusView>;
      out = { ...out, extensions: { ...out.extensions, changedAt, publishedAt } };
    }
    return out;
  };

  const run = (args: ExecutionArgs, payload: unknown): Result => {
    const result = execute({ ...args, rootValue: payload }) as Result;
    if (!options.stampChanges && !options.maskError) return result;
    return result instanceof Promise ? result.then((r) => finish(r, payload)) : finish(result, payload);
  };

  return async (args) => {
    const source = await createSourceEventStream(args);
    if (!(Symbol.asyncIterator in source)) return finish(source as ExecutionResult, undefined);
    if (!isReadyStream(source)) throw new TypeError('a subscription resolver must return a ReadyStream');
    const key = `${documentId(args.document)}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? {})}`;
    return mapReadyStream(source, (payload: unknown) => {
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
  };
}

/** Serves subscriptions through `subscribe` on every transport that goes through Yoga (SSE). */
export function useSharedSubscriptionResults(subscribe: SharedSubscribe): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(subscribe as Parameters<typeof setSubscribeFn>[0]);
    },
  };
}
