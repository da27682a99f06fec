import { expect, it } from 'vitest';
import { Refusals } from '../src/scheduler/refusals.ts';

it('pauses 1 s on a refusal, doubles while refusals go on, ignores those in flight, and opens on a success', () => {
  const r = new Refusals();
  expect(r.state).toEqual({ paused: false });
  expect(r.succeeded(0)).toBeNull(); // no episode to end
  expect(r.refused('401', 1_000)).toEqual({ until: 2_000, first: true });
  expect(r.paused(1_500)).toBe(true);
  expect(r.refused('401 again', 1_500)).toBeNull(); // an attempt already in flight: same pause
  expect(r.paused(2_000)).toBe(false);
  expect(r.probing).toBe(true);
  expect(r.refused('403', 2_100)).toEqual({ until: 4_100, first: false });
  expect(r.state).toEqual({ paused: true, since: 1_000, until: 4_100, error: '403' });
  let now = 4_100;
  for (let i = 0; i < 10; i++) now = r.refused('403', now)?.until ?? now;
  const last = r.refused('403', now);
  expect(last && last.until - now).toBe(60_000); // capped at a minute
  expect(r.succeeded(now + 5)).toBe(now + 5 - 1_000);
  expect(r.state).toEqual({ paused: false });
  expect(r.probing).toBe(false);
});
