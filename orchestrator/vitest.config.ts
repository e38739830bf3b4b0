import { defineConfig } from 'vitest/config';

// Integration tests start whole clusters of processes: one file at a time on a 2-core machine.
// The CLI they spawn runs the bundle (orchestrator/dist), built first when missing or older than the sources.
export default defineConfig({
  test: { fileParallelism: false, testTimeout: 180_000, hookTimeout: 60_000, globalSetup: ['test/build.setup.ts'] },
});
