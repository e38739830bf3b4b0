import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Lint `source` as a file named `name` inside the repository (biome, the repository's configuration). */
function lint(name: string, source: string) {
  const dir = mkdtempSync(join(root, 'actors', 'test', 'probe-'));
  try {
    writeFileSync(join(dir, name), source);
    return spawnSync('npx', ['biome', 'lint', join(dir, name)], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('machines stay pure', () => {
  it.each(['Date.now()', 'performance.now()', 'setTimeout(() => {}, 1)', 'setInterval(() => {}, 1)', 'process.pid'])(
    'a *.machine.ts file that reads %s fails the lint; any other file may',
    (expr) => {
      const source = `export const x = ${expr};\n`;
      const machine = lint('probe.machine.ts', source);
      expect(machine.status).not.toBe(0);
      expect(machine.stdout + machine.stderr).toMatch(/noRestrictedGlobals/);
      expect(lint('probe.node.ts', source).status).toBe(0);
    },
    60_000,
  );
});
