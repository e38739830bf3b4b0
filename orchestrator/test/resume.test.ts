import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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

  it('a client killed while the cluster replays after --resume is replaced by one that asks the pods where they are, and the run ends with the reference hash', async () => {
    const dir = tempDir();
    const runDir = join(dir, 'run');
    // checkpoints every 50 steps: the resume replays ~30 steps, long enough to kill the client in the middle
    const topo = parseTopology({ ...preset('tiny'), checkpoint: { everySteps: 50, keep: 3 } });
    const topoFile = join(dir, 'tiny-ckpt50.json');
    writeFileSync(topoFile, JSON.stringify(topo));
    const steps = 160;
    const clientLog = join(runDir, 'logs', 'client.log');
    /** The steps a client process (by pid) has logged as committed. */
    const committedBy = (pid: number) =>
      (existsSync(clientLog) ? readFileSync(clientLog, 'utf8') : '').split('\n').flatMap((l) => {
        try {
          const o = JSON.parse(l) as { pid?: number; msg?: string; step?: number };
          return o.pid === pid && o.msg === 'step committed' && typeof o.step === 'number' ? [o.step] : [];
        } catch {
          return [];
        }
      });
    /** The pid of the run's client process (a child of the launcher), once there is one. */
    const clientPid = () => {
      if (!existsSync(join(runDir, 'run.json'))) return undefined;
      const ps = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).stdout;
      const runId = (JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as { runId: string }).runId;
      const line = ps.split('\n').find((l) => / client --steps /.test(l) && l.includes(runId));
      return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
    };
    const waitFor = async (what: string, ok: () => boolean, ms = 120_000) => {
      const until = Date.now() + ms;
      while (!ok() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      if (!ok()) throw new Error(`not within ${ms} ms: ${what}`);
    };

    // the first launcher: stopped (Ctrl-C) once step 80 is committed, 30 steps past the checkpoint of step 49
    const first = spawn(
      process.execPath,
      [cliPath, 'train', '--topology', topoFile, '--steps', String(steps), '--run-dir', runDir, '--log-level', 'info'],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    const firstExit = new Promise<number | null>((r) => first.once('exit', (code) => r(code)));
    let pid: number | undefined;
    await waitFor('the first client', () => {
      pid = clientPid();
      return pid !== undefined;
    });
    await waitFor('step 80 committed', () => committedBy(pid!).includes(80));
    first.kill('SIGINT');
    expect(await firstExit).toBe(130);

    // the second: restores checkpoint 49 and replays; its client is killed as soon as the replay has committed step 52
    const second = spawn(process.execPath, [cliPath, 'train', '--resume', runDir, '--json', '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    second.stdout.on('data', (d) => (out += String(d)));
    second.stderr.on('data', (d) => (err += String(d)));
    const secondExit = new Promise<number | null>((r) => second.once('exit', (code) => r(code)));
    let resumed: number | undefined;
    await waitFor('the resumed client', () => {
      resumed = clientPid();
      return resumed !== undefined && resumed !== pid;
    });
    await waitFor('step 52 replayed', () => committedBy(resumed!).includes(52));
    const replayedBeforeKill = committedBy(resumed!);
    process.kill(resumed!, 'SIGKILL');
    expect(Math.max(...replayedBeforeKill)).toBeLessThan(80); // killed in the middle of the replay
    const code = await secondExit;
    expect(code, err.slice(-2000)).toBe(0);
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
    const ref = runReference(topo, steps);
    expect(r).toMatchObject({ steps, paramsHash: ref.paramsHash, podsIdenticalEveryStep: true });
    expect((r.restarts as { process: string }[]).map((x) => x.process)).toEqual(['client']);
  }, 400_000);

  it('--resume of something that is not a run exits 2 and says so', () => {
    const r = cli(['train', '--resume', join(tempDir(), 'nothing')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--resume: .* is not a run \(cannot read .*run\.json \(ENOENT\)\)/);
  });
});
