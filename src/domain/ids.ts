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

/** Whether `text` has no lone UTF-16 surrogate (one that no UTF-8 encoding can hold). */
const isWellFormed = (text: string): boolean => (text as string & { isWellFormed(): boolean }).isWellFormed();

export const contentSchema = z
  .string({ error: 'must be a string' })
  .refine(isWellFormed, {
    error: 'must be valid Unicode text (it holds a lone UTF-16 surrogate, which cannot be stored unaltered)',
  })
  .refine((text) => codePointLength(text, limits.contentMaxLength) <= limits.contentMaxLength, {
    error: `must be at most ${limits.contentMaxLength} characters long (longer content is rejected, never truncated)`,
  });
