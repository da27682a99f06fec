/**
 * `deriver-live honcho attach` and `detach` (docs/honcho-attach.md): install, in one transaction,
 * what change capture needs beside a running Honcho's tables (`attach.sql`: the schema
 * `deriver_live_honcho` and five triggers on `queue` and `active_queue_sessions`), or remove all of
 * it (`detach.sql`). Honcho's code, schema and behaviour are otherwise untouched.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { packageFile } from '../util/package-files.ts';
import { HONCHO_SCHEMA } from './honcho-source.ts';

const sql = (name: string) => readFileSync(packageFile(`honcho/${name}`), 'utf8');

/** What `attach` did: installed now, or found already installed (nothing changed). */
export type AttachOutcome = 'attached' | 'already-attached';

async function withClient<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function attachHoncho(url: string): Promise<AttachOutcome> {
  return withClient(url, async (client) => {
    const found = await client.query<{ queue: boolean; held: boolean; attached: boolean }>(
      `SELECT to_regclass('public.queue') IS NOT NULL AS queue,
        to_regclass('public.active_queue_sessions') IS NOT NULL AS held,
        EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS attached`,
      [HONCHO_SCHEMA],
    );
    const row = found.rows[0];
    if (!row?.queue || !row.held) {
      throw new Error(
        "this database has no Honcho queue (tables public.queue and public.active_queue_sessions): point --database-url at Honcho's PostgreSQL",
      );
    }
    if (row.attached) return 'already-attached';
    await runInTransaction(client, 'attach.sql');
    return 'attached';
  });
}

export async function detachHoncho(url: string): Promise<void> {
  await withClient(url, (client) => runInTransaction(client, 'detach.sql'));
}

/** Runs one of this folder's SQL files in a transaction: all of it, or nothing. */
async function runInTransaction(client: pg.Client, file: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(sql(file));
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
