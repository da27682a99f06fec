/**
 * Which web origins may talk to the server. A browser marks every cross-site request with an
 * `Origin` header; the policy allows a request that has none (not from a page: curl, SDKs), one
 * from the server's own origin (GraphiQL, the dashboard) and one from a configured origin, and
 * refuses the rest, on HTTP and on the WebSocket upgrade alike.
 */
import type { IncomingMessage } from 'node:http';

export interface OriginPolicyOptions {
  /** Origins allowed besides the server's own, e.g. `https://app.example.com`. @default none */
  readonly allowedOrigins?: readonly string[];
}

export interface OriginPolicy {
  /** Origins allowed besides the server's own. */
  readonly allowedOrigins: readonly string[];
  /** Whether the request's `Origin` (if any) may use the API. */
  allows(request: IncomingMessage): boolean;
}

/** `scheme://host[:port]` in its canonical form, or `null` when `value` is no origin. */
export function normalizeOrigin(value: string): string | null {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return url.origin;
  } catch {
    return null;
  }
}

export function createOriginPolicy(options: OriginPolicyOptions = {}): OriginPolicy {
  const allowed = new Set(
    (options.allowedOrigins ?? []).map((o) => normalizeOrigin(o)).filter((o): o is string => o !== null),
  );
  return {
    allowedOrigins: [...allowed],
    allows(request) {
      const origin = request.headers.origin;
      if (origin === undefined) return true;
      const normalized = normalizeOrigin(origin);
      if (normalized === null) return false;
      if (allowed.has(normalized)) return true;
      // Same origin: the page was served by this server, under the host the browser used.
      const host = request.headers.host;
      return host !== undefined && new URL(normalized).host === host.toLowerCase();
    },
  };
}
