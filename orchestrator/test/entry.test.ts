import { spawnSync } from 'node:child_process';
import { statSync, utimesSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The global setup has built orchestrator/dist; bin/entry.js decides between it and the sources.
const entry = new URL('../bin/entry.js', import.meta.url).href;
const bundle = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const env = { ...process.env };
delete env.LOCKSTEP_ENTRY;

function chosen(extra: Record<string, string> = {}) {
  const code = `import { load } from '${entry}'; await load('cli'); console.log(process.env.LOCKSTEP_ENTRY);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...env, ...extra } });
  return { from: r.stdout.trim(), stderr: r.stderr };
}

describe('bin/entry.js', () => {
  it('loads the bundle while it is newer than the sources, and says nothing', () => {
    expect(chosen()).toEqual({ from: 'dist', stderr: '' });
    expect(chosen({ LOCKSTEP_ENTRY: 'src' })).toEqual({ from: 'src', stderr: '' });
  });

  it('a LOCKSTEP_ENTRY other than src or dist is exit 2 naming it (it was taken as unset)', () => {
    const code = `import { load } from '${entry}'; await load('cli'); console.log('loaded');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      env: { ...env, LOCKSTEP_ENTRY: 'bogus' },
    });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('lockstep: UsageError: LOCKSTEP_ENTRY: must be src or dist (or unset); got "bogus"\n');
    expect(chosen({ LOCKSTEP_ENTRY: '' })).toEqual({ from: 'dist', stderr: '' });
  });

  it('never runs a bundle older than the sources: it runs them through tsx, with one warning line', () => {
    const { atime, mtime } = statSync(bundle);
    utimesSync(bundle, atime, new Date('2000-01-01'));
    try {
      const r = chosen();
      expect(r.from).toBe('src');
      expect(r.stderr).toMatch(
        /^lockstep: orchestrator\/dist is older than \S+; running the sources through tsx \(npm run build rebuilds it\)\n$/,
      );
    } finally {
      utimesSync(bundle, atime, mtime);
    }
  });
});
