import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../src/index.ts';
import { tempDir } from './helpers.ts';

/** Pids of the nats-servers whose config lies under `dir`. */
function serversUnder(dir: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `nats-server -c ${dir}`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); // a zombie has ended
  } catch {
    return false;
  }
}

async function until<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('lockstep bench ended by a signal', () => {
  it('leaves none of its baseline nats-servers running', async () => {
    // the bench puts its servers' configs under TMPDIR: a directory of this test's own
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [cliPath, 'bench', '--small-steps', '1', '--large-steps', '1', '--sim-seeds', '0', '--profile-steps', '0', '--out', `${dir}/out`],
      { stdio: 'ignore', env: { ...process.env, TMPDIR: dir } },
    );
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const servers = await until('the baseline servers start', 60_000, () => {
        const s = serversUnder(dir);
        return s.length === 2 ? s : undefined;
      });
      child.kill('SIGTERM');
      await exited;
      // the reaper gives them SIGTERM, then SIGKILL after 2 s
      const end = Date.now() + 10_000;
      while (servers.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(servers.filter(alive)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      for (const p of serversUnder(dir)) process.kill(p, 'SIGKILL');
    }
  }, 120_000);
});
