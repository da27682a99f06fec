import { z } from 'zod';

/**
 * Derivation settings decide which tasks a message creates. A workspace holds defaults; a session may
 * override any of them (an absent or `null` field inherits the workspace's value).
 */
export interface DerivationSettings {
  /** Create representation tasks. @default true */
  readonly reasoningEnabled: boolean;
  /** Create summary tasks. @default true */
  readonly summariesEnabled: boolean;
  /** A short summary every N messages. @default 20 */
  readonly messagesPerShortSummary: number;
  /** A long summary every N messages. @default 60 */
  readonly messagesPerLongSummary: number;
}

export const DEFAULT_SETTINGS: DerivationSettings = {
  reasoningEnabled: true,
  summariesEnabled: true,
  messagesPerShortSummary: 20,
  messagesPerLongSummary: 60,
};

const everyN = z
  .number({ error: 'must be a number' })
  .int({ error: 'must be a whole number' })
  .min(1, { error: 'must be at least 1' })
  .max(1_000_000, { error: 'must be at most 1000000' });

/** Partial settings as stored on a workspace or session. */
export const settingsOverrideSchema = z.strictObject({
  reasoningEnabled: z.boolean({ error: 'must be true or false' }).nullish(),
  summariesEnabled: z.boolean({ error: 'must be true or false' }).nullish(),
  messagesPerShortSummary: everyN.nullish(),
  messagesPerLongSummary: everyN.nullish(),
});

export type SettingsOverride = z.infer<typeof settingsOverrideSchema>;

/** Layers overrides over the defaults; later layers win, `null`/absent fields inherit. */
export function resolveSettings(...layers: (SettingsOverride | undefined)[]): DerivationSettings {
  const result: { -readonly [K in keyof DerivationSettings]: DerivationSettings[K] } = {
    ...DEFAULT_SETTINGS,
  };
  for (const layer of layers) {
    if (!layer) continue;
    for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof DerivationSettings)[]) {
      const value = layer[key];
      if (value !== null && value !== undefined) (result as Record<string, unknown>)[key] = value;
    }
  }
  return result;
}

/** Merges an update into stored overrides: `undefined` keeps, `null` clears (inherit), a value sets. */
export function mergeOverrides(
  current: SettingsOverride,
  update: SettingsOverride | undefined,
): SettingsOverride {
  if (!update) return current;
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(update)) {
    if (value === undefined) continue;
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged as SettingsOverride;
}
