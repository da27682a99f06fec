/**
 * The GraphiQL page, served so it cannot be used to amplify traffic: the 9 MB self-contained page
 * (no CDN) is rendered and compressed once (brotli ~1.7 MB, gzip ~2.4 MB), revalidated by ETag
 * (a reload costs a 304), and each address gets a small budget of full page sends.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { brotliCompressSync, gzipSync, constants as zlibConstants } from 'node:zlib';
import { createTokenBuckets } from '../util/token-bucket.ts';

/**
 * Run before GraphiQL starts: it does not read the tabs another page saved. GraphiQL shares its
 * tab state between browser tabs through localStorage (and a page with a running subscription
 * rewrites it at every event), so a second browser tab (step 3 of the walkthrough) opened on an
 * empty, active "<untitled>" tab. Each page now starts on the walkthrough, or on the query in its
 * URL (`?query=`, which the page keeps up to date as you edit, so a reload restores it); headers
 * (the key) are stored apart and still shared.
 */
const OWN_TABS = `<script>(function(){var read=Storage.prototype.getItem;Storage.prototype.getItem=function(key){return key==='graphiql:tabState'&&this===window.localStorage?null:read.apply(this,arguments)}})()</script>`;

export interface GraphiqlPageOptions {
  /** Options handed to Yoga's GraphiQL renderer (title, default query, protocol). */
  readonly render: Record<string, unknown>;
  /** Full page sends allowed per address per minute (304s are free). @default 10 */
  readonly sendsPerMinute?: number;
}

export interface GraphiqlPage {
  /** Whether the request asks for the page (a GET that accepts HTML). */
  wants(request: IncomingMessage): boolean;
  serve(request: IncomingMessage, response: ServerResponse): Promise<void>;
}

interface Rendered {
  readonly etag: string;
  readonly identity: Buffer;
  readonly br: Buffer;
  readonly gzip: Buffer;
}

export function createGraphiqlPage(options: GraphiqlPageOptions): GraphiqlPage {
  let rendered: Promise<Rendered> | undefined;
  const perMinute = options.sendsPerMinute ?? 10;
  const sends = createTokenBuckets({ ratePerSecond: perMinute / 60, burst: perMinute });

  const render = async (): Promise<Rendered> => {
    const { renderGraphiQL } = await import('@graphql-yoga/render-graphiql');
    const html = renderGraphiQL(options.render as Parameters<typeof renderGraphiQL>[0]);
    const identity = Buffer.from(html.replace(/<head>/i, `<head>${OWN_TABS}`));
    return {
      etag: `"${createHash('sha256').update(identity).digest('base64url').slice(0, 27)}"`,
      identity,
      br: brotliCompressSync(identity, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9 } }),
      gzip: gzipSync(identity, { level: 9 }),
    };
  };

  return {
    wants: (request) => request.method === 'GET' && (request.headers.accept ?? '').includes('text/html'),
    async serve(request, response) {
      rendered ??= render();
      const page = await rendered;
      const common = { etag: page.etag, 'cache-control': 'no-cache', vary: 'accept-encoding' };
      if (request.headers['if-none-match'] === page.etag) {
        response.writeHead(304, common).end();
        return;
      }
      const taken = sends.take(request.socket.remoteAddress ?? 'unknown');
      if (taken.kind === 'limited') {
        response
          .writeHead(429, { 'content-type': 'text/plain', 'retry-after': String(taken.retryAfterSeconds) })
          .end('GraphiQL was sent to this address too often; retry in a moment.\n');
        return;
      }
      const accepts = String(request.headers['accept-encoding'] ?? '');
      const [encoding, body] = /\bbr\b/.test(accepts)
        ? ['br', page.br]
        : /\bgzip\b/.test(accepts)
          ? ['gzip', page.gzip]
          : [undefined, page.identity];
      response.writeHead(200, {
        ...common,
        'content-type': 'text/html; charset=utf-8',
        'content-length': body.byteLength,
        ...(encoding ? { 'content-encoding': encoding } : {}),
      });
      response.end(body);
    },
  };
}
