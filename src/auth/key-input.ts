/** Arguments of `createKey`, validated into the scope of the key to mint. */
import { z } from 'zod';
import { idSchema } from '../domain/ids.ts';
import type { Scope } from './scope.ts';

/** Longest lifetime of a minted key: ten years. */
export const MAX_KEY_LIFETIME_SECONDS = 10 * 365 * 24 * 3600;

export const createKeyInput = z
  .strictObject({
    admin: z.boolean({ error: 'must be true or false' }).nullish(),
    workspaceId: idSchema.nullish(),
    sessionId: idSchema.nullish(),
    peerId: idSchema.nullish(),
    expiresInSeconds: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: 'must be at least 1' })
      .max(MAX_KEY_LIFETIME_SECONDS, { error: `must be at most ${MAX_KEY_LIFETIME_SECONDS} (ten years)` })
      .nullish(),
  })
  .superRefine((input, ctx) => {
    if (input.admin) {
      for (const name of ['workspaceId', 'sessionId', 'peerId'] as const) {
        if (input[name] != null) {
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message: 'an admin key names no workspace, session or peer',
          });
        }
      }
      return;
    }
    if (input.workspaceId == null) {
      ctx.addIssue({
        code: 'custom',
        path: ['workspaceId'],
        message: 'a key names a workspace (or is an admin key: admin: true)',
      });
    }
    if (input.sessionId != null && input.peerId != null) {
      ctx.addIssue({
        code: 'custom',
        path: ['peerId'],
        message: 'a key names a session or a peer, not both',
      });
    }
  })
  .transform((input): { scope: Scope; expiresInSeconds: number | null } => {
    const expiresInSeconds = input.expiresInSeconds ?? null;
    const workspaceId = input.workspaceId ?? '';
    if (input.admin) return { scope: { kind: 'admin' }, expiresInSeconds };
    if (input.sessionId != null) {
      return { scope: { kind: 'session', workspaceId, sessionId: input.sessionId }, expiresInSeconds };
    }
    if (input.peerId != null)
      return { scope: { kind: 'peer', workspaceId, peerId: input.peerId }, expiresInSeconds };
    return { scope: { kind: 'workspace', workspaceId }, expiresInSeconds };
  });
