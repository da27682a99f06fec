// `npm start`: the compiled server (dist/, built by npm ci's `prepare`), started in this process.
// When a file under src/ is newer than the last build (a clone being worked on), it builds first
// and says so, so `npm start` never runs code older than the sources.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import module from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stamp = join(root, 'dist', '.built');

/** The newest modification time of the files under `dir`, in ms. */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

if (!existsSync(stamp) || newest(join(root, 'src')) > statSync(stamp).mtimeMs) {
  console.error('npm start: the sources changed since the last build; building first (npm run build)');
  const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
// Node 22.1+ keeps the compiled code of every module it loads (in the temp folder): later starts
// skip compiling the server and its dependencies again.
module.enableCompileCache?.();
await import('../dist/bundle/server.js');
