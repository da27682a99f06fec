import { PermanentTaskError } from '../errors.ts';
import type { TaskHandler } from '../scheduler/options.ts';

/**
 * A message whose content holds this fails its tasks' first attempt for good with the demo
 * handler (`npm run demo -- --fail-rate`): failed tasks to see, and a Retry that then succeeds.
 */
export const DEMO_FAIL_MARK = '[demo: fail once]';

/**
 * The built-in **demo** handler: it does no real work, it only waits `delayMs` per task (honouring
 * the abort signal) so the status API can be watched moving. A task of a message marked with
 * `DEMO_FAIL_MARK` fails for good on its first attempt. Replace it with real handlers.
 */
export function createDemoHandler(options: { readonly delayMs: number }): TaskHandler {
  return ({ task, attempt, signal }) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        if (attempt === 1 && task.messages.some((m) => m.content.includes(DEMO_FAIL_MARK))) {
          reject(
            new PermanentTaskError(
              'demo: this message asked to fail (npm run demo -- --fail-rate); Retry runs it again',
            ),
          );
          return;
        }
        resolve();
      }, options.delayMs);
      function onAbort() {
        clearTimeout(timer);
        reject(signal.reason);
      }
      signal.addEventListener('abort', onAbort, { once: true });
    });
}
