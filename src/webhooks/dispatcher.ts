/**
 * Delivers the webhook outbox (docs/webhooks.md). Each process that runs workers runs one.
 *
 * ## Protocol
 * - A pass claims due deliveries (leased for twice the request timeout, so a dispatcher that dies
 *   mid-request leaves them to another pass, and no pass takes one whose request may still run), at most `maxInFlight` at once and **one per endpoint**:
 *   a slow or dead endpoint holds one request slot, never the queue or the other endpoints.
 * - Each is POSTed with its JSON body, `X-Honcho-Signature: <hex HMAC-SHA256 of the body>` (Honcho's),
 *   `X-Deriver-Signature: sha256=<same hex>`, `X-Deriver-Event-Id` (the same on every retry: the
 *   deduplication key), `X-Deriver-Event-Type` and `X-Deriver-Attempt`; `timeoutMs` per request.
 * - 2xx: delivered. Anything else: retried with backoff (1 s doubling to an hour, with jitter) until
 *   a day after the event, then given up (`failed`, with its last error).
 * - Requests go only to the registered URL, and unless `allowPrivate`, never to a loopback,
 *   private, link-local or unspecified address: the check runs on the addresses DNS returns for
 *   the connection itself, so a name that later resolves elsewhere cannot slip past it.
 *
 * ## Modes
 * `running` (passes on `wake()` and every `pollMs`) -> `stopping` (`stop()`: no new pass; requests
 * in flight finish or time out).
 */
import { createHmac } from 'node:crypto';
import { type LookupAddress, lookup } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { DeliveryOutcome, DueDelivery, Store } from '../store/store.ts';
import { refusedAddress, refusedUrl } from './destination.ts';

export interface WebhookDispatcherOptions {
  readonly store: Store;
  /** Time one delivery request may take. @default 30000 */
  readonly timeoutMs?: number;
  /** Requests in flight at most (each to a different endpoint). @default 16 */
  readonly maxInFlight?: number;
  /** Fallback poll for deliveries other processes wrote. @default 500 */
  readonly pollMs?: number;
  /** Allow loopback and private addresses (tests, a receiver on the same host). @default false */
  readonly allowPrivate?: boolean;
  /** Each attempt's outcome (metrics, logs). */
  readonly onAttempt?: (delivery: DueDelivery, outcome: DeliveryOutcome) => void;
  /** A store call failed; the next pass tries again. */
  readonly onError?: (error: unknown) => void;
  readonly random?: () => number;
}

export interface WebhookDispatcher {
  /** Looks for due deliveries now (this process wrote some). */
  wake(): void;
  /** Stops claiming; resolves when the requests in flight are done. */
  stop(): Promise<void>;
}

/** Give up on a delivery this long after its event. */
export const GIVE_UP_AFTER_MS = 24 * 3_600_000;

/** The hex HMAC-SHA256 of a body (the value of `X-Honcho-Signature`). */
export const signWebhook = (body: string, secret: string): string =>
  createHmac('sha256', secret).update(body).digest('hex');

/** A DNS lookup for the request that refuses private addresses. */
const guardedLookup: typeof lookup = ((
  hostname: string,
  options: object,
  callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => {
  lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, []);
    const reason = addresses.map((a) => refusedAddress(a.address)).find((r) => r !== null);
    if (reason) {
      return callback(
        Object.assign(
          new Error(`refused: ${hostname} resolves to ${reason} (set WEBHOOK_ALLOW_PRIVATE=true to allow)`),
          { code: 'EPRIVATE' },
        ),
        [],
      );
    }
    if ((options as { all?: boolean }).all) return callback(null, addresses);
    const first = addresses[0];
    callback(null, first?.address ?? '', first?.family);
  });
}) as typeof lookup;

/** When to try again after `attempts` failed attempts (`null`: give up). */
export function retryAt(
  delivery: DueDelivery,
  attempts: number,
  now: number,
  random: () => number,
): number | null {
  const delay = Math.min(3_600_000, 1_000 * 2 ** Math.max(0, attempts - 1));
  const at = now + Math.round(delay / 2 + (random() * delay) / 2);
  return at - delivery.createdAt > GIVE_UP_AFTER_MS ? null : at;
}

export function createWebhookDispatcher(options: WebhookDispatcherOptions): WebhookDispatcher {
  const { store } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxInFlight = options.maxInFlight ?? 16;
  const random = options.random ?? Math.random;
  /** Endpoint id -> the request in flight to it. */
  const inFlight = new Map<number, Promise<void>>();
  let mode: 'running' | 'stopping' = 'running';
  let passing = false;
  let again = false;

  async function pass(): Promise<void> {
    if (mode !== 'running') return;
    if (passing) {
      again = true;
      return;
    }
    passing = true;
    try {
      do {
        again = false;
        const free = maxInFlight - inFlight.size;
        if (free <= 0) break;
        const due = await store.claimWebhookDeliveries({
          max: free,
          leaseMs: 2 * timeoutMs,
          busyEndpoints: [...inFlight.keys()],
        });
        for (const delivery of due) {
          const sent = deliver(delivery).finally(() => {
            inFlight.delete(delivery.endpointId);
            void pass();
          });
          inFlight.set(delivery.endpointId, sent);
        }
      } while (again && mode === 'running');
    } catch (error) {
      options.onError?.(error);
    } finally {
      passing = false;
    }
  }

  async function deliver(delivery: DueDelivery): Promise<void> {
    const error = await post(delivery);
    const attempts = delivery.attempts + 1;
    const outcome: DeliveryOutcome =
      error === null
        ? { ok: true }
        : { ok: false, error, retryAt: retryAt(delivery, attempts, Date.now(), random) };
    try {
      await store.settleWebhookDelivery(delivery.id, outcome);
      options.onAttempt?.(delivery, outcome);
    } catch (settleError) {
      // The lease runs out and another pass delivers it again: at least once.
      options.onError?.(settleError);
    }
  }

  /** POSTs one delivery; `null` when the endpoint took it, else why not. */
  function post(delivery: DueDelivery): Promise<string | null> {
    return new Promise((resolve) => {
      let url: URL;
      try {
        url = new URL(delivery.url);
      } catch {
        resolve(`not a URL: ${delivery.url}`);
        return;
      }
      const body = Buffer.from(delivery.body);
      const signature = signWebhook(delivery.body, delivery.secret);
      const transport = url.protocol === 'https:' ? https : http;
      const refused = refusedUrl(url) ?? (options.allowPrivate ? null : refusedAddress(url.hostname));
      if (refused) {
        resolve(`refused: ${refused} (set WEBHOOK_ALLOW_PRIVATE=true to allow private addresses)`);
        return;
      }
      const request = transport.request(
        url,
        {
          method: 'POST',
          signal: AbortSignal.timeout(timeoutMs),
          lookup: options.allowPrivate ? undefined : guardedLookup,
          headers: {
            'content-type': 'application/json',
            'content-length': body.length,
            'user-agent': 'deriver-live-webhooks',
            'x-honcho-signature': signature,
            'x-deriver-signature': `sha256=${signature}`,
            'x-deriver-event-id': `evt_${delivery.id}`,
            'x-deriver-event-type': delivery.type,
            'x-deriver-attempt': String(delivery.attempts + 1),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => {
            if (chunks.length < 16) chunks.push(chunk);
          });
          response.on('error', (error) => resolve(error.message));
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(null);
            const text = Buffer.concat(chunks).toString('utf8').trim().slice(0, 300);
            resolve(`HTTP ${status}${text ? `: ${text}` : ''}`);
          });
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) => {
        resolve(
          error.name === 'TimeoutError' || error.name === 'AbortError'
            ? `no answer within ${timeoutMs} ms`
            : error.code === 'EPRIVATE'
              ? error.message
              : `could not reach ${url.origin}: ${error.code ?? error.message}`,
        );
      });
      request.end(body);
    });
  }

  const poll = setInterval(() => void pass(), options.pollMs ?? 500).unref();
  void pass();
  return {
    wake: () => void pass(),
    async stop() {
      mode = 'stopping';
      clearInterval(poll);
      await Promise.allSettled([...inFlight.values()]);
    },
  };
}
