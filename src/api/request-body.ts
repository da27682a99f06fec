/**
 * Reading request bodies within bounds: one `BodyReader` per server, used by a Yoga plugin (that
 * replaces the JSON body parser and bounds every other one) and by every other route that takes a
 * body (Honcho's REST routes), so all of them share one limit, one budget and the same refusals:
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

export interface BodyReaderOptions {
  /** Bytes of one body. */
  readonly maxBodyBytes: number;
  /** Bytes of all bodies being received at once. */
  readonly maxInflightBytes: number;
}

/** A body as a transport has it. */
export interface BodySource {
  /** The `Content-Length` header, if any. */
  readonly declaredLength: string | null;
  /** The whole body (read once its declared length was checked and reserved). */
  all(): Promise<Uint8Array<ArrayBuffer>>;
  /** The body as it arrives (read when no length was declared). */
  chunks(): AsyncIterable<Uint8Array> | null;
}

/** Reads bodies within one per-request limit and one in-flight budget (see the file's head). */
export interface BodyReader {
  /** A refusal (413, 400) known from the declared length alone, before anything is read. */
  checkDeclared(declaredLength: string | null): void;
  /** The whole body, or a refusal: 413 too large, 429 over the budget (`GraphQLError`s). */
  read(source: BodySource): Promise<Uint8Array<ArrayBuffer>>;
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

export function createBodyReader(options: BodyReaderOptions): BodyReader {
  const { maxBodyBytes } = options;
  const budget = createByteBudget(options.maxInflightBytes);
  const tooLarge = () =>
    refusal(
      `the request body is larger than ${maxBodyBytes} bytes (the server's MAX_BODY_BYTES)`,
      413,
      'REQUEST_ENTITY_TOO_LARGE',
    );

  /** Reads a body sent without a length, counting (and reserving) bytes as they arrive. */
  async function readCounted(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array<ArrayBuffer>> {
    const read: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const value of chunks) {
        if (size + value.byteLength > maxBodyBytes) throw tooLarge();
        if (!budget.reserve(value.byteLength)) throw busy();
        size += value.byteLength;
        read.push(value);
      }
      return Buffer.concat(read, size);
    } finally {
      budget.release(size);
    }
  }

  const checkDeclared = (declared: string | null): void => {
    if (declared === null) return;
    if (!CONTENT_LENGTH.test(declared))
      throw refusal('the Content-Length header is not a valid length', 400, 'BAD_REQUEST');
    if (Number(declared) > maxBodyBytes) throw tooLarge();
  };

  return {
    checkDeclared,
    async read(source) {
      checkDeclared(source.declaredLength);
      if (source.declaredLength === null) {
        const chunks = source.chunks();
        return chunks ? readCounted(chunks) : new Uint8Array();
      }
      const length = Number(source.declaredLength);
      if (!budget.reserve(length)) throw busy();
      try {
        return await source.all();
      } finally {
        budget.release(length);
      }
    },
  };
}

/** A fetch `Request`'s body as a `BodySource` (its stream is cancelled when reading stops early). */
function requestSource(request: Request): BodySource {
  return {
    declaredLength: request.headers.get('content-length'),
    all: async () => new Uint8Array(await request.arrayBuffer()),
    chunks: () => {
      const body = request.body;
      if (!body) return null;
      return (async function* () {
        const reader = body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return;
            yield value;
          }
        } finally {
          await reader.cancel().catch(() => {});
        }
      })();
    },
  };
}

export function useRequestBodyLimits(reader: BodyReader): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      reader.checkDeclared(request.headers.get('content-length'));
      if (request.method === 'POST' && isJson(request.headers.get('content-type'))) {
        setRequestParser(async (req) => parseJson(await reader.read(requestSource(req))));
      } else if (requestParser && request.body) {
        const parse = requestParser;
        setRequestParser(async (req) => {
          const body = await reader.read(requestSource(req));
          return parse(new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body }));
        });
      }
    },
  };
}
