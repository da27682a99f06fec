import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 ships CJS (main) and ESM (module) builds. Node loads the CJS one for the libraries
    // (graphql-yoga, graphql-ws); make the code under test load the same copy, so there is one
    // GraphQLError class, as in production.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at a time even on two cores: most files spend their time waiting on child
    // processes, PostgreSQL and browsers, not on this CPU.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // expect.poll waits for a state; its default second is a clock assumption that a loaded
    // machine breaks. The test's own timeout is the bound.
    expect: { poll: { timeout: 50_000 } },
  },
});
