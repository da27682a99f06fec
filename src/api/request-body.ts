/**
 * Reading GraphQL request bodies within bounds (a Yoga plugin that replaces the JSON body parser
 * and bounds every other one):
 * - one body is at most `maxBodyBytes`: 413 `REQUEST_ENTITY_TOO_LARGE`, by `Content-Length` before
 *   a byte is read and while reading a body sent without one (this replaces Yoga's own limit,
 *   `maxRequestBodySize`, which pipes every body through a TransformStream: about a sixth of the
 *   CPU time of a small request);
 * - bodies being received at once share `maxInflightBytes`; a request that would go over it waits
 *   for nothing: it is refused with 429 `RATE_LIMITED` and a retry hint, so a burst of huge bodies
 *   cannot take the process's memory;
 * - a JSON body that is not UTF-8 or not JSON gets a 400 `BAD_REQUEST` that names the problem and
 *   never echoes the body (Yoga's own parser puts the JSON error, which quotes the body, in the
 *   answer). Other bodies (GraphQL strings, forms, multipart) are read within the same bounds and
 *   handed to Yoga's parser for them.
 */
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';

export interface RequestBodyOptions {
  /** Bytes of one body. */
  readonly maxBodyBytes: number;
  /** Bytes of all bodies being received at once. */
  readonly maxInflightBytes: number;
}

function refusal(message: string, status: number, code: string, extra: Record<string, unknown> = {}) {
  const headers = code === 'RATE_LIMITED' ? { 'retry-after': '1' } : undefined;
  return new GraphQLError(message, { extensions: { code, ...extra, http: { status, headers } } });
}

/** Only one non-negative integer is a valid Content-Length (no lists, no signs: smuggling). */
const CONTENT_LENGTH = /^\d+$/;

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
  const { maxBodyBytes } = options;
  const budget = createByteBudget(options.maxInflightBytes);
  const tooLarge = () =>
    refusal(
      `the request body is larger than ${maxBodyBytes} bytes (the server's MAX_BODY_BYTES)`,
      413,
      'REQUEST_ENTITY_TOO_LARGE',
    );

  /** Reads a body sent without a length, counting (and reserving) bytes as they arrive. */
  async function readCounted(body: ReadableStream<Uint8Array>): Promise<Uint8Array<ArrayBuffer>> {
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (size + value.byteLength > maxBodyBytes) throw tooLarge();
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

  /** The whole body, within both bounds (its Content-Length was checked against the first). */
  async function readBody(request: Request): Promise<Uint8Array<ArrayBuffer>> {
    const declared = request.headers.get('content-length');
    if (declared === null) return request.body ? readCounted(request.body) : new Uint8Array();
    const length = Number(declared);
    if (!budget.reserve(length)) throw busy();
    try {
      return new Uint8Array(await request.arrayBuffer());
    } finally {
      budget.release(length);
    }
  }

  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      const declared = request.headers.get('content-length');
      if (declared !== null) {
        if (!CONTENT_LENGTH.test(declared))
          throw refusal('the Content-Length header is not a valid length', 400, 'BAD_REQUEST');
        if (Number(declared) > maxBodyBytes) throw tooLarge();
      }
      if (request.method === 'POST' && isJson(request.headers.get('content-type'))) {
        setRequestParser(async (req) => parseJson(await readBody(req)));
      } else if (requestParser && request.body) {
        const parse = requestParser;
        setRequestParser(async (req) => {
          const body = await readBody(req);
          return parse(new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body }));
        });
      }
    },
  };
}
