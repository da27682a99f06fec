/**
 * Health endpoints. `/healthz`: the process is alive (always 200). `/readyz` (and its alias
 * `/health`): every part the service needs works now; each check runs (the store's proves a write
 * commits) and the answer is 200 when all pass, 503 otherwise, as JSON naming each part:
 * `{"status":"ready","checks":{"store":{"ok":true}}}` or
 * `{"status":"unready","checks":{"store":{"ok":false,"error":"..."}}}`.
 */
import type { ServerResponse } from 'node:http';

/** One readiness check: resolves when the part works, rejects with the reason otherwise. */
export type ReadinessCheck = () => Promise<void>;

export const HEALTH_PATHS = { alive: '/healthz', ready: '/readyz', legacy: '/health' } as const;

type CheckResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

export async function runReadiness(checks: Readonly<Record<string, ReadinessCheck>>) {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
      try {
        await check();
        return [name, { ok: true }];
      } catch (error) {
        return [name, { ok: false, error: error instanceof Error ? error.message : String(error) }];
      }
    }),
  );
  const ready = entries.every(([, result]) => result.ok);
  return { ready, body: { status: ready ? 'ready' : 'unready', checks: Object.fromEntries(entries) } };
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  response
    .writeHead(status, {
      ...headers,
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(text),
    })
    .end(text);
}
