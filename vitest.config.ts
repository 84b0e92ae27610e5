import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ when it is stale, and gives the suite a temp folder that must end empty.
    globalSetup: ['test/setup/global.ts'],
    // tfjs kernels are CPU-bound and the machine has two cores: run files one
    // at a time in forks so a heavy file never starves another's timeouts.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
