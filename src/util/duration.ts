/** Durations as people write them in settings and flags: `500ms`, `90s`, `30m`, `12h`, `7d`, `52w`. */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** `text` (a whole number and one unit of ms, s, m, h, d, w) in milliseconds; `null` when it is not one. */
export function parseDurationMs(text: string): number | null {
  const match = /^(\d+)(ms|[smhdw])$/.exec(text.trim());
  if (!match) return null;
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}
