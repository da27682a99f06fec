/**
 * Files the code reads at run time (SQL migrations, the dashboard page, Honcho's attach SQL), by
 * their path under the code's root: `src/` when the sources run (tsx), `dist/` when the compiled
 * modules or the start-up bundle (`dist/bundle/`, `scripts/build.js`) run. Each of those sits one
 * folder below its root, so the root is this module's parent folder wherever it was put.
 */
const ROOT = new URL('../', import.meta.url);

/** `path` under the code's root, e.g. `store/sqlite/migrations/`. */
export const packageFile = (path: string): URL => new URL(path, ROOT);
