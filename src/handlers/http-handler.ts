/**
 * A task handler that hands each task to a deriver written in any language (docs/deriver.md): the
 * task is POSTed as JSON (`task-body.ts`) and the answer decides the attempt.
 *
 * ## Protocol
 * - Body: one task (`TaskBody`), or for a batched task type `{ "tasks": [TaskBody, ...] }` (a
 *   unit's consecutive tasks, in order).
 * - Headers: `Content-Type: application/json`, `X-Deriver-Task-Id` (stable across attempts: the
 *   idempotency key; a batch: its first task's, and `X-Deriver-Batch-Size`), `X-Deriver-Attempt`,
 *   and with a secret `X-Deriver-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`.
 * - 2xx: the task is done; a batch's answer may be `{"completed": n}`: its first n tasks are done,
 *   the rest go back in line. 429: the provider is rate limited: `RateLimitedError` with the
 *   `Retry-After` wait (seconds or an HTTP date), so the task goes back with no failure counted and
 *   its type pauses on every instance. Other 4xx: the task fails for good, the response text is
 *   kept as its error (except 408, a failed attempt; and 401 and 403, which refuse this service,
 *   not the task: `HandlerRefusedError`, so the task stays pending and the scheduler pauses
 *   dispatch until the handler answers again). 5xx, a timeout (the task's `timeoutMs`, through the
 *   attempt's `AbortSignal`), a refused or reset connection: a failed attempt, retried with backoff
 *   by the scheduler.
 * - Order per work unit holds because the scheduler sends a unit's next task only after the
 *   previous one's attempt ended; the requests in flight are at most the scheduler's concurrency.
 *   Connections are kept alive and reused, at most `maxSockets` of them.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { HandlerRefusedError, PermanentTaskError, RateLimitedError } from '../errors.ts';
import type { BatchResult, TaskHandler } from '../scheduler/options.ts';
import { taskBody } from './task-body.ts';

export interface HttpHandlerOptions {
  /** Where tasks are POSTed (`http://` or `https://`). */
  readonly url: string;
  /** Key of the `X-Deriver-Signature` HMAC; `null` sends requests unsigned. @default null */
  readonly secret?: string | null;
  /** Open connections at most (set it to the scheduler's concurrency). @default 8 */
  readonly maxSockets?: number;
  /** Characters of a response kept as a task's error at most. @default 2000 */
  readonly maxErrorChars?: number;
}

export interface HttpHandler {
  readonly handler: TaskHandler;
  /** Closes the kept-alive connections. */
  close(): void;
}

/** Statuses in the 4xx range that mean "not now" rather than "never": a failed attempt. */
const RETRYABLE_4XX = new Set([408]);

/** A `Retry-After` value in seconds (a number of seconds, or an HTTP date); `null` when absent or unreadable. */
export function retryAfterSeconds(value: string | undefined, now = Date.now()): number | null {
  const text = value?.trim();
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, (at - now) / 1000);
}

/** A batch answer's `{"completed": n}`; `undefined` (every task done) for any other body. */
function batchResultOf(text: string): BatchResult | undefined {
  try {
    const parsed = JSON.parse(text) as { completed?: unknown };
    return typeof parsed?.completed === 'number' ? { completed: parsed.completed } : undefined;
  } catch {
    return undefined;
  }
}

/** The `X-Deriver-Signature` value of a body. */
export function signBody(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function createHttpHandler(options: HttpHandlerOptions): HttpHandler {
  const url = new URL(options.url);
  const transport = url.protocol === 'https:' ? https : http;
  const agent = new transport.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 8 });
  const maxErrorChars = options.maxErrorChars ?? 2_000;
  const secret = options.secret ?? null;

  const handler: TaskHandler = ({ task, tasks, batch, attempt, signal }) =>
    new Promise<BatchResult | undefined>((resolve, reject) => {
      const json = batch ? { tasks: tasks.map((t) => taskBody(t, t.failures + 1)) } : taskBody(task, attempt);
      const body = Buffer.from(JSON.stringify(json));
      const headers: http.OutgoingHttpHeaders = {
        'content-type': 'application/json',
        'content-length': body.length,
        'x-deriver-task-id': String(task.id),
        'x-deriver-attempt': String(attempt),
      };
      if (batch) headers['x-deriver-batch-size'] = String(tasks.length);
      if (secret !== null) headers['x-deriver-signature'] = signBody(body, secret);
      const request = transport.request(url, { method: 'POST', headers, agent, signal }, (response) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        response.on('data', (chunk: Buffer) => {
          // Only the start of a long answer is kept (as the error); the rest is read and dropped.
          if (kept < maxErrorChars * 4) {
            chunks.push(chunk);
            kept += chunk.length;
          }
        });
        response.on('error', reject);
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          const raw = Buffer.concat(chunks).toString('utf8').trim();
          if (status >= 200 && status < 300) return resolve(batch ? batchResultOf(raw) : undefined);
          const text = raw.slice(0, maxErrorChars);
          const error = text || `HTTP ${status} ${response.statusMessage ?? ''}`.trim();
          if (status === 429) {
            const header = response.headers['retry-after'];
            return reject(
              new RateLimitedError(
                `the handler at ${url.origin} is rate limited (HTTP 429: ${error.slice(0, 200)})`,
                retryAfterSeconds(Array.isArray(header) ? header[0] : header),
              ),
            );
          }
          if (status === 401 || status === 403) {
            return reject(
              new HandlerRefusedError(
                `the handler at ${url.origin} refused the request with HTTP ${status} (${error.slice(0, 200)}): ${
                  secret === null
                    ? 'it may expect signed requests: set HANDLER_SECRET'
                    : 'check that HANDLER_SECRET is the secret the handler verifies with'
                }`,
              ),
            );
          }
          if (status >= 400 && status < 500 && !RETRYABLE_4XX.has(status))
            return reject(new PermanentTaskError(error));
          reject(new Error(`the handler at ${url.origin} answered HTTP ${status}: ${error}`));
        });
      });
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (signal.aborted) return reject(signal.reason);
        reject(new Error(`could not reach the handler at ${url.origin}: ${error.code ?? error.message}`));
      });
      request.end(body);
    });

  return { handler, close: () => agent.destroy() };
}
