import { spawn, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../src/index.ts';
import { tempDir } from './helpers.ts';

function processesOf(runDir: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', runDir], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter((l) => l && !l.includes(' train '));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('Ctrl-C', () => {
  it('stops every process the launcher started: nats-servers, pods, hosts, client', async () => {
    const runDir = join(tempDir(), 'run');
    const child = spawn(process.execPath, [cliPath, 'train', '--topology', 'tiny', '--steps', '100000', '--run-dir', runDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no step within 60 s:\n${err}`)), 60_000);
      child.stderr.on('data', (d) => {
        err += String(d);
        if (/all 2 pods ready/.test(err) && /train tiny \d+\/100000/.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // 2 pods' nats-servers and the run log's (their configs are in the run dir), 2 pods, 4 hosts, 1 client
    expect(processesOf(runDir).length).toBe(10);
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGINT');
    });
    expect(code).toBe(130);
    const until = Date.now() + 10_000;
    while (processesOf(runDir).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(processesOf(runDir)).toEqual([]);
  });
});
