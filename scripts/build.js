// `npm run build` (npm ci runs it as `prepare`): compiles src/ into dist/ (tsconfig.build.json),
// copies the files the compiled code reads at run time (SQL migrations, the dashboard page,
// Honcho's attach SQL), then stamps the build (dist/.built), which `npm start` compares with the
// sources to rebuild when one is newer.
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (compiled.status !== 0) process.exit(compiled.status ?? 1);
for (const dir of ['store/sqlite/migrations', 'store/postgres/migrations', 'server/dashboard', 'honcho']) {
  cpSync(`${root}src/${dir}`, `${root}dist/${dir}`, { recursive: true, filter: (f) => !f.endsWith('.ts') });
}
writeFileSync(`${root}dist/.built`, '');
