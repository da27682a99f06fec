/**
 * Runs an async pass on request, one at a time: a request while a pass runs makes exactly one more
 * pass after it (however many came), so work asked for during a pass is never missed and a burst
 * of requests costs at most two passes.
 *
 * ## Protocol
 * idle --request--> running; running --request--> rerun; running|rerun --pass ends--> idle, or
 * running again when it was rerun; any --stop--> stopped (no more passes; `stop` resolves once the
 * pass in flight has ended). A pass that throws is reported to `onError` and counts as ended.
 */
export interface CoalescedRuns {
  request(): void;
  stop(): Promise<void>;
}

export function coalescedRuns(pass: () => Promise<void>, onError: (error: unknown) => void): CoalescedRuns {
  let mode: 'idle' | 'running' | 'rerun' | 'stopped' = 'idle';
  let inFlight: Promise<void> = Promise.resolve();
  const request = (): void => {
    if (mode === 'stopped') return;
    if (mode !== 'idle') {
      mode = 'rerun';
      return;
    }
    mode = 'running';
    inFlight = pass()
      .catch(onError)
      .finally(() => {
        const again = mode === 'rerun';
        if (mode !== 'stopped') mode = 'idle';
        if (again) request();
      });
  };
  return {
    request,
    async stop() {
      mode = 'stopped';
      await inFlight;
    },
  };
}
