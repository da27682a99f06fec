// Builds better-sqlite3's native module for the Node.js running this script (npm ci's `prepare`
// runs it; `npm run build:sqlite` runs it again after switching Node versions).
//
// better-sqlite3's own install script (`prebuild-install || node-gyp rebuild`) is declined in
// package.json's allowScripts because it builds against whatever headers npm's `nodedir` names:
// a machine-wide setting (this kind of machine points it at /usr, the headers of the Node that
// ships there) then produces a module another Node cannot load (ERR_DLOPEN_FAILED). Here the
// headers are chosen by ABI: the running Node's own (a Node unpacked from a tarball or the npm
// registry carries them in <prefix>/include/node), else the configured nodedir when its ABI is the
// running Node's, else none, and node-gyp downloads the right ones (a machine with internet).
// A prebuilt binary is tried first, exactly as better-sqlite3 does.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const packageDir = dirname(require.resolve('better-sqlite3/package.json'));
const abi = process.versions.modules;
const label = `better-sqlite3 for Node ${process.version} (ABI ${abi})`;

/** True when a fresh Node process of this version opens a database with the module as built. */
const loads = () =>
  spawnSync(process.execPath, ['-e', "new (require('better-sqlite3'))(':memory:').close()"], {
    cwd: dirname(packageDir),
    stdio: 'ignore',
  }).status === 0;

/** The ABI of the headers under `dir` (include/node/node_version.h), or undefined. */
const headersAbi = (dir) => {
  const file = join(dir, 'include', 'node', 'node_version.h');
  if (!existsSync(file)) return undefined;
  const versions = [...readFileSync(file, 'utf8').matchAll(/#define NODE_MODULE_VERSION (\d+)/g)];
  return versions.at(-1)?.[1];
};

const run = (command, args, env = process.env) => {
  const result = spawnSync(command, args, { cwd: packageDir, env, encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
};

/** npm's own node-gyp, which npm names to the scripts it runs. */
const nodeGyp = process.env.npm_config_node_gyp;
if (!nodeGyp) {
  console.error('Run this through npm (npm run build:sqlite): it uses the node-gyp npm ships.');
  process.exit(1);
}

if (loads()) process.exit(0);

const prebuilt = run(process.execPath, [require.resolve('prebuild-install/bin.js')]);
if (prebuilt.ok && loads()) {
  console.log(`${label}: prebuilt binary installed`);
  process.exit(0);
}

const own = dirname(dirname(process.execPath));
const configured = process.env.npm_config_nodedir;
const nodedir = [own, configured].find((dir) => dir && headersAbi(dir) === abi);
const env = { ...process.env };
delete env.npm_config_nodedir;
if (nodedir) env.npm_config_nodedir = nodedir;
const built = run(process.execPath, [nodeGyp, 'rebuild', '--release', '--jobs', 'max'], env);
if (built.ok && loads()) {
  console.log(`${label}: built against ${nodedir ?? 'downloaded'} headers`);
  process.exit(0);
}
console.error(built.output.split('\n').slice(-40).join('\n'));
console.error(
  `Could not build ${label}. ` +
    (nodedir
      ? 'The compiler output is above.'
      : `No Node headers of ABI ${abi} were found (looked in ${own}/include/node` +
        `${configured ? ` and ${configured}/include/node` : ''}) and node-gyp could not download them: ` +
        'set npm_config_nodedir to a folder holding include/node of this Node version.'),
);
process.exit(1);
