import SchemaBuilder from '@pothos/core';
import ValidationPlugin from '@pothos/plugin-validation';
import type { Keyring } from '../auth/keyring.ts';
import type { Principal } from '../auth/scope.ts';
import { InvalidInputError } from '../errors.ts';
import type { LiveStatus } from '../live/live-status.ts';
import type { Deriver } from '../service/deriver.ts';
import type { QueueService } from '../service/queue.ts';
import type { StatusEngine } from '../status/status-engine.ts';

/** The services every resolver uses; the same for every request. */
export interface ApiServices {
  readonly deriver: Deriver;
  readonly status: StatusEngine;
  readonly live: LiveStatus;
  /** Inside the queue: work units, failed tasks, retry and cancel. */
  readonly queue: QueueService;
  /** Verifies and mints keys; `null` when authentication is off. */
  readonly keys: Keyring | null;
}

/** What every resolver gets: the services and who is calling. */
export interface ApiContext extends ApiServices {
  readonly principal: Principal;
  /** Whom per-client limits count against: the key's scope, else the remote address. */
  readonly clientId: string;
}

type PathSegment = PropertyKey | { readonly key: PropertyKey };

export const builder = new SchemaBuilder<{
  Context: ApiContext;
  DefaultFieldNullability: false;
  Scalars: { ID: { Input: string; Output: string } };
}>({
  plugins: [ValidationPlugin],
  defaultFieldNullability: false,
  validation: {
    // Zod's messages are written for people; keep them, with the argument path they belong to.
    validationError: (failure) =>
      new InvalidInputError(
        failure.issues.map((issue) => ({
          path: (issue.path ?? []).map((segment: PathSegment) => {
            const key = typeof segment === 'object' ? segment.key : segment;
            return typeof key === 'number' ? key : String(key);
          }),
          message: issue.message,
        })),
      ),
  },
});
