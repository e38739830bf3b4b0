import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTopology, preset } from '@lockstep/topology';
import { cliPath, runReference } from '../src/index.ts';
import { cli, tempDir } from './helpers.ts';

describe('train --resume', () => {
  it('after the whole run is stopped, continues from the newest checkpoint and ends with the uninterrupted paramsHash', async () => {
    const runDir = join(tempDir(), 'run');
    const steps = 60;
    const child = spawn(process.execPath, [cliPath, 'train', '--topology', 'tiny', '--steps', String(steps), '--run-dir', runDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // stop it (Ctrl-C) once the checkpoint of step 19 is complete, well before step 60
    const manifest = join(runDir, 'checkpoints', 'step-00000019', 'manifest.json');
    const until = Date.now() + 90_000;
    while (!existsSync(manifest) && Date.now() < until && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(manifest)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);

    const r = cli(['train', '--resume', runDir, '--json'], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const ref = runReference(parseTopology(preset('tiny')), steps);
    expect(r.json).toMatchObject({ steps, paramsHash: ref.paramsHash, podsIdenticalEveryStep: true, replayedHashesMatch: true });
    const restores = r.json!.restores as { checkpoint: number }[];
    expect(restores.length).toBe(1);
    expect(restores[0].checkpoint).toBeGreaterThanOrEqual(19);
  }, 300_000);

  it('--resume of something that is not a run exits 2 and says so', () => {
    const r = cli(['train', '--resume', join(tempDir(), 'nothing')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--resume: .* is not a run \(no readable .*run\.json: ENOENT\)/);
  });
});
