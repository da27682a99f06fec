import { builder } from './builder.ts';
import './operations.ts';
import './queue-api.ts';
import './derivation-api.ts';
import './webhooks-api.ts';
import './status-history-api.ts';

/** The executable schema; types and fields sorted so the printed SDL is stable. */
export const schema = builder.toSchema({ sortSchema: true });
