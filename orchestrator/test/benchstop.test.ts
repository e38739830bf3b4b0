import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../src/index.ts';
import { alive, pgrep, tempDir, until } from './helpers.ts';

/** Pids of the nats-servers whose config lies under `dir`. */
const serversUnder = (dir: string) => pgrep(['-f', `nats-server -c ${dir}`]);

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
