import { z } from 'zod';
import { limits } from './limits.ts';

/** Empty strings are left to the length check, so they get one clear message. */
const ID_PATTERN = /^[A-Za-z0-9_-]*$/;

/** A workspace, peer or session id: 1 to 100 characters of `[A-Za-z0-9_-]`. */
export const idSchema = z
  .string({ error: 'must be a string' })
  .min(limits.idMinLength, { error: 'must not be empty' })
  .max(limits.idMaxLength, { error: `must be at most ${limits.idMaxLength} characters long` })
  .regex(ID_PATTERN, {
    error: 'may contain only letters, digits, "_" and "-"',
  });

/** Length in Unicode code points; cheap for the common case where UTF-16 length is already small. */
export function codePointLength(text: string, atMost: number): number {
  if (text.length <= atMost) return text.length;
  let count = 0;
  for (const _ of text) count++;
  return count;
}

export const contentSchema = z
  .string({ error: 'must be a string' })
  .refine((text) => codePointLength(text, limits.contentMaxLength) <= limits.contentMaxLength, {
    error: `must be at most ${limits.contentMaxLength} characters long (longer content is rejected, never truncated)`,
  });
