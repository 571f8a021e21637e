import { defineConfig } from 'vitest/config';

// Testcontainers' reaper (Ryuk) is an image pulled from Docker Hub, which an offline machine
// cannot reach; the cluster helper removes its own containers and network instead
// (test/containers/helpers/cluster.ts). Set here so that `npm run test:containers` works as the
// README shows it, without a variable set by hand; an explicit setting still wins.
const ryukDisabled = process.env['TESTCONTAINERS_RYUK_DISABLED'] ?? 'true';
process.env['TESTCONTAINERS_RYUK_DISABLED'] = ryukDisabled;

export default defineConfig({
  test: {
    include: ['test/containers/**/*.test.ts'],
    env: { TESTCONTAINERS_RYUK_DISABLED: ryukDisabled },
    testTimeout: 600_000,
    hookTimeout: 600_000,
    maxWorkers: 1,
    pool: 'forks',
  },
});
