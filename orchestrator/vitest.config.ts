import { defineConfig } from 'vitest/config';

// Integration tests start whole clusters of processes: one file at a time on a 2-core machine.
export default defineConfig({ test: { fileParallelism: false, testTimeout: 180_000, hookTimeout: 60_000 } });
