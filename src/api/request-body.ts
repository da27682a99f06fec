/**
 * Reading GraphQL request bodies within bounds (a Yoga plugin that replaces the JSON body parser).
 * The size of one body is Yoga's own limit (`maxRequestBodySize`: 413 `REQUEST_ENTITY_TOO_LARGE`,
 * by `Content-Length` before a byte is read and while reading a chunked body); on top of it:
 * - bodies being received at once share `maxInflightBytes`; a request that would go over it waits
 *   for nothing: it is refused with 429 `RATE_LIMITED` and a retry hint, so a burst of huge bodies
 *   cannot take the process's memory;
 * - a body that is not UTF-8 or not JSON gets a 400 `BAD_REQUEST` that names the problem and never
 *   echoes the body (Yoga's own parser puts the JSON error, which quotes the body, in the answer).
 */
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';

export interface RequestBodyOptions {
  /** Bytes of all bodies being received at once. */
  readonly maxInflightBytes: number;
}

function refusal(message: string, status: number, code: string, extra: Record<string, unknown> = {}) {
  const headers = code === 'RATE_LIMITED' ? { 'retry-after': '1' } : undefined;
  return new GraphQLError(message, { extensions: { code, ...extra, http: { status, headers } } });
}

const busy = () =>
  refusal('the server is receiving too many large requests at once; retry in a moment', 429, 'RATE_LIMITED', {
    retryAfterSeconds: 1,
  });

/** Bytes reserved by bodies being received; a reservation that does not fit is refused. */
function createByteBudget(total: number) {
  let used = 0;
  return {
    reserve(bytes: number): boolean {
      if (used + bytes > total && used > 0) return false;
      used += bytes;
      return true;
    },
    release(bytes: number): void {
      used -= bytes;
    },
  };
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function parseJson(bytes: Uint8Array): GraphQLParams | GraphQLParams[] {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw refusal('the request body is not valid UTF-8', 400, 'BAD_REQUEST');
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    // V8's message quotes the body; keep only where parsing stopped.
    const position = /position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
    throw refusal(
      `the request body is not valid JSON${position ? ` (parsing stopped at byte ${position})` : ''}`,
      400,
      'BAD_REQUEST',
    );
  }
  if (body === null || typeof body !== 'object') {
    throw refusal('the request body must be a JSON object or array', 400, 'BAD_REQUEST');
  }
  return body as GraphQLParams | GraphQLParams[];
}

const isJson = (contentType: string | null): boolean => {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  return type === 'application/json' || type === 'application/graphql+json';
};

export function useRequestBodyLimits(options: RequestBodyOptions): Plugin {
  const budget = createByteBudget(options.maxInflightBytes);

  /** Reads a body sent without a length, counting (and reserving) bytes as they arrive. */
  async function readCounted(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!budget.reserve(value.byteLength)) throw busy();
        size += value.byteLength;
        chunks.push(value);
      }
      return Buffer.concat(chunks, size);
    } catch (error) {
      await reader.cancel().catch(() => {});
      throw error;
    } finally {
      budget.release(size);
    }
  }

  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST' || !isJson(request.headers.get('content-type'))) return;
      setRequestParser(async (req) => {
        const declared = req.headers.get('content-length');
        if (declared === null)
          return req.body ? parseJson(await readCounted(req.body)) : parseJson(new Uint8Array());
        const length = Number(declared);
        if (!budget.reserve(length)) throw busy();
        try {
          return parseJson(new Uint8Array(await req.arrayBuffer()));
        } finally {
          budget.release(length);
        }
      });
    },
  };
}
