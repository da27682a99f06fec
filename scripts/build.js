// `npm run build` (npm ci runs it as `prepare`): compiles src/ into dist/ (tsconfig.build.json),
// the package's modules and types; bundles the server and the CLI with their dependencies into
// dist/bundle/ (esbuild), which `npm start` and the `deriver-live` command run: loading some 1,000
// files one by one was most of start-up (0.8-1.0 s of resolving, reading and linking modules, the
// bundle 0.3-0.4 s); copies the files the code reads at run time (SQL migrations, the dashboard
// page, Honcho's attach SQL), then stamps the build (dist/.built), which `npm start` compares with
// the sources to rebuild when one is newer.
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (compiled.status !== 0) process.exit(compiled.status ?? 1);
await build({
  absWorkingDir: root,
  entryPoints: { server: 'src/server/main.ts', cli: 'src/cli/bin.ts' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true, // the CLI's commands stay separate chunks, loaded when run
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Left to Node: native modules, optional peers that are not installed (they are required inside
  // a try), and GraphiQL's 9 MB page, loaded on its first request only.
  external: ['better-sqlite3', 'pg-native', 'bufferutil', 'utf-8-validate', '@graphql-yoga/render-graphiql'],
  // A production build: graphql-js then checks its types with a plain `instanceof` (its development
  // check for a second copy of graphql costs a few percent of a request's CPU).
  define: { 'process.env.NODE_ENV': '"production"' },
  // The CommonJS dependencies inside an ES module call `require` for Node's own modules.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
for (const dir of ['store/sqlite/migrations', 'store/postgres/migrations', 'server/dashboard', 'honcho']) {
  cpSync(`${root}src/${dir}`, `${root}dist/${dir}`, { recursive: true, filter: (f) => !f.endsWith('.ts') });
}
writeFileSync(`${root}dist/.built`, '');
