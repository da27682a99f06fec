/**
 * The live dashboard at `/`: one small self-contained page (no CDN, no library: it speaks
 * graphql-transport-ws itself), read once at start, compressed once, revalidated by ETag. Its one
 * inline script is allowed by hash in a strict Content-Security-Policy; it talks only to this
 * server.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { packageFile } from '../../util/package-files.ts';

const PAGE = packageFile('server/dashboard/dashboard.html');

export interface DashboardPage {
  serve(request: IncomingMessage, response: ServerResponse): void;
}

export function createDashboardPage(): DashboardPage {
  const html = readFileSync(PAGE, 'utf8');
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
  const csp = [
    "default-src 'none'",
    `script-src 'sha256-${createHash('sha256').update(script).digest('base64')}'`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  const identity = Buffer.from(html);
  const gzip = gzipSync(identity, { level: 9 });
  const etag = `"${createHash('sha256').update(identity).digest('base64url').slice(0, 27)}"`;
  return {
    serve(request, response) {
      const common = {
        etag,
        'cache-control': 'no-cache',
        vary: 'accept-encoding',
        'content-security-policy': csp,
        'x-content-type-options': 'nosniff',
      };
      if (request.headers['if-none-match'] === etag) {
        response.writeHead(304, common).end();
        return;
      }
      const gzipped = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
      const body = gzipped ? gzip : identity;
      response.writeHead(200, {
        ...common,
        'content-type': 'text/html; charset=utf-8',
        'content-length': body.byteLength,
        ...(gzipped ? { 'content-encoding': 'gzip' } : {}),
      });
      response.end(request.method === 'HEAD' ? undefined : body);
    },
  };
}
