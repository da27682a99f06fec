import type { TaskHandler } from '../scheduler/options.ts';

/**
 * The built-in **demo** handler: it does no real work, it only waits `delayMs` per task (honouring
 * the abort signal) so the status API can be watched moving. Replace it with real handlers.
 */
export function createDemoHandler(options: { readonly delayMs: number }): TaskHandler {
  return ({ signal }) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, options.delayMs);
      function onAbort() {
        clearTimeout(timer);
        reject(signal.reason);
      }
      signal.addEventListener('abort', onAbort, { once: true });
    });
}
