import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    // Limits that only catch hangs: a test decides by events, counts and values, never by how fast
    // the machine is, and on a busy 2-core CI machine a multi-process test may take minutes.
    testTimeout: 900_000,
    hookTimeout: 900_000,
    setupFiles: ['test/helpers/temp-dirs-setup.ts'],
    // Integration tests spawn worker processes; two cores cannot run many files at once.
    maxWorkers: 2,
    pool: 'forks',
  },
});
