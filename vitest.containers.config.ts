import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/containers/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    maxWorkers: 1,
    pool: 'forks',
  },
});
