/** What the API's resolvers are given (kept apart from the schema builder so the server's public types do not depend on Pothos). */

import type DataLoader from 'dataloader';
import type { Keyring } from '../auth/keyring.ts';
import type { Principal } from '../auth/scope.ts';
import type { LiveStatus } from '../live/live-status.ts';
import type { DerivationService, MessageDerivation, MessageDerivationKey } from '../service/derivation.ts';
import type { Deriver } from '../service/deriver.ts';
import type { QueueService } from '../service/queue.ts';
import type { StatusEngine } from '../status/status-engine.ts';
import type { StatusHistory } from '../status/status-history.ts';
import type { Store } from '../store/store.ts';

/** The services every resolver uses; the same for every request. */
export interface ApiServices {
  readonly deriver: Deriver;
  readonly status: StatusEngine;
  /** Each workspace's recent status, sampled (the dashboard's chart). */
  readonly history: StatusHistory;
  readonly live: LiveStatus;
  /** Inside the queue: work units, failed tasks, retry and cancel, session watermarks. */
  readonly queue: QueueService;
  /** Your messages, derived: what the tasks of given messages are doing. */
  readonly derivation: DerivationService;
  /** Webhook endpoints (the store's), and a wake-up for this process's dispatcher. */
  readonly webhooks: { readonly store: Store; readonly allowPrivate: boolean; wake(): void };
  /** Verifies and mints keys; `null` when authentication is off. */
  readonly keys: Keyring | null;
}

/** What every resolver gets: the services and who is calling. */
export interface ApiContext extends ApiServices {
  readonly principal: Principal;
  /** `Message.derivation`, batched per tick (`derivation-api.ts`). */
  readonly messageDerivations: DataLoader<MessageDerivationKey, MessageDerivation>;
  /** Whom per-client limits count against: the key's scope, else the remote address. */
  readonly clientId: string;
}
