/**
 * Writes the printed SDL to schema/schema.graphql (`npm run schema:print`), or with `--check`
 * fails when the committed file differs from the schema the code builds (`npm run schema:check`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { printSchema } from 'graphql';
import { schema } from '../src/api/schema.ts';

const file = new URL('../schema/schema.graphql', import.meta.url);
const printed = `${printSchema(schema)}\n`;
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(file, 'utf8');
  } catch {}
  if (committed !== printed) {
    process.stderr.write('schema/schema.graphql is stale: run `npm run schema:print` and commit it.\n');
    process.exit(1);
  }
  process.stdout.write('schema/schema.graphql is up to date.\n');
} else {
  writeFileSync(file, printed);
  process.stdout.write('wrote schema/schema.graphql\n');
}
