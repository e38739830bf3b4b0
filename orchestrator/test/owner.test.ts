import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { parseTopology, preset, runLogStream } from '@lockstep/topology';
import { cliPath, freePorts, runReference } from '../src/index.ts';
import { alive, cli, pgrep, tempDir } from './helpers.ts';

/** Pids of the processes whose command line names `runDir` (nats-servers by their config, role processes by their flags), the launcher aside. */
const processesOf = (runDir: string, launcher?: number) => pgrep(['-f', runDir]).filter((p) => p !== launcher && p !== process.pid);

/** The launcher's reaper: its child running bin/reaper.js. */
const reaperOf = (launcher: number) => pgrep(['-P', String(launcher), '-f', 'reaper.js']);

/** Pids of `pids` still running after up to `ms`. */
async function leftAfter(pids: number[], ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  while (pids.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(alive);
}

/** Start `lockstep train` (tiny, endless) in `runDir`; resolves once it committed `atLeast` steps. */
async function trainingLauncher(runDir: string, atLeast = 3): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [cliPath, 'train', '--topology', 'tiny', '--steps', '100000', '--run-dir', runDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fewer than ${atLeast} steps within 90 s:\n${err}`)), 90_000);
    child.stderr!.on('data', (d) => {
      err += String(d);
      const steps = [...err.matchAll(/train tiny (\d+)\/100000/g)].map((m) => Number(m[1]));
      if (steps.some((s) => s >= atLeast)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { child, exited };
}

describe.skipIf(process.platform !== 'linux')('a run directory has exactly one owner', () => {
  it('a second train or train --resume on a run in progress exits 2 naming its launcher; once that launcher is killed (-KILL) nothing of it is left, and a resume takes over and ends with the reference hash', async () => {
    const runDir = join(tempDir(), 'run');
    const a = await trainingLauncher(runDir);
    const pid = a.child.pid!;
    const pids = [...processesOf(runDir, pid), ...reaperOf(pid)];
    expect(pids.length).toBe(3 + 2 + 4 + 1 + 1); // 3 nats-servers, 2 pods, 4 hosts, the client, the reaper

    const fresh = cli(['train', '--topology', 'tiny', '--steps', '5', '--run-dir', runDir]);
    expect(fresh.code, fresh.stderr).toBe(2);
    expect(fresh.stderr).toContain(`is owned by launcher pid ${pid}`);
    const resume = cli(['train', '--resume', runDir]);
    expect(resume.code, resume.stderr).toBe(2);
    expect(resume.stderr).toContain(`is owned by launcher pid ${pid}`);
    expect(resume.stderr.split('\n').filter((l) => /^lockstep: \w+Error: /.test(l))).toHaveLength(1); // one line says why
    expect(resume.stderr).not.toMatch(/\n\s+at /); // no stack trace

    a.child.kill('SIGKILL');
    await a.exited;
    expect(await leftAfter(pids, 10_000)).toEqual([]);

    // the launcher is gone: a resume takes the run over (here refused only for its too small --steps, which says how many are committed)
    const below = cli(['train', '--resume', runDir, '--steps', '1']);
    expect(below.code, below.stderr).toBe(2);
    const committed = Number(/--steps: 1 is below the (\d+) steps/.exec(below.stderr)?.[1]);
    expect(committed).toBeGreaterThanOrEqual(3);
    const steps = committed + 3;
    const r = cli(['train', '--resume', runDir, '--steps', String(steps), '--json'], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const ref = runReference(parseTopology(preset('tiny')), steps);
    expect(r.json).toMatchObject({
      steps,
      paramsHash: ref.paramsHash,
      replayedHashesMatch: true,
      resumed: { committedBefore: committed, runLogLost: false, finished: false },
    });
    // fewer steps than the recorded target were asked for: the target stays
    expect(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).steps).toBe(100000);
    expect(processesOf(runDir)).toEqual([]);
  }, 400_000);

  for (const signals of [['SIGHUP'], ['SIGTERM', 'SIGTERM'], ['SIGINT', 'SIGINT']] as NodeJS.Signals[][])
    it(`${signals.join(' then ')} to the launcher leaves no process of the run (servers, roles, reaper)`, async () => {
      const runDir = join(tempDir(), 'run');
      const a = await trainingLauncher(runDir, 1);
      const pid = a.child.pid!;
      const pids = [...processesOf(runDir, pid), ...reaperOf(pid)];
      expect(pids.length).toBe(11);
      for (const s of signals) a.child.kill(s);
      await a.exited;
      expect(await leftAfter(pids, 10_000)).toEqual([]);
      expect(processesOf(runDir)).toEqual([]);
    }, 200_000);

  it('a fresh train in a directory holding another run refuses unless --overwrite; resume of a finished run does nothing; fewer --steps exit 2; a run log with a hole is refused with the reason; a lost run log is said and the run trained again', async () => {
    const runDir = join(tempDir(), 'run');
    const first = cli(['train', '--topology', 'tiny', '--steps', '12', '--run-dir', runDir, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(processesOf(runDir)).toEqual([]); // ended by itself: nothing left
    const runId = first.json!.runId as string;
    const hash = first.json!.paramsHash as string;
    const target = readFileSync(join(runDir, 'run.json'), 'utf8');

    const again = cli(['train', '--topology', 'tiny', '--steps', '12', '--run-dir', runDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`run directory ${runDir} holds another run`);
    expect(again.stderr).toContain('--overwrite');

    const done = cli(['train', '--resume', runDir, '--json']);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain(`run ${runId} is finished: all 12 steps are committed; nothing to do`);
    expect(done.json).toMatchObject({ steps: 12, paramsHash: hash, resumed: { committedBefore: 12, finished: true } });
    const fewer = cli(['train', '--resume', runDir, '--steps', '5']);
    expect(fewer.code).toBe(2);
    expect(fewer.stderr).toContain('--steps: 5 is below the 12 steps');
    expect(readFileSync(join(runDir, 'run.json'), 'utf8')).toBe(target);

    // a hole in the run log (record 5 deleted, on the run's own store)
    const [port] = await freePorts(1);
    const conf = join(tempDir(), 'js.conf');
    writeFileSync(conf, `listen: 127.0.0.1:${port}\njetstream { store_dir: ${JSON.stringify(join(runDir, 'jetstream'))} }\n`);
    const server = spawn('nats-server', ['-c', conf], { stdio: 'ignore' });
    try {
      let nc: NatsConnection | undefined;
      const end = Date.now() + 10_000;
      while (!nc) {
        try {
          nc = await connect({ servers: `127.0.0.1:${port}` });
        } catch (err) {
          if (Date.now() > end) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const jsm = await jetstreamManager(nc);
      expect(await jsm.streams.deleteMessage(runLogStream(runId), 5)).toBe(true);
      await nc.close();
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
    const hole = cli(['train', '--resume', runDir]);
    expect(hole.code, hole.stderr).toBe(2);
    expect(hole.stderr).toContain(`run ${runId} cannot be resumed: run log: 11 records for sequences 1..12: 1 missing`);

    // the run log lost: said on the terminal and in the summary, and the run trained again from step 0
    rmSync(join(runDir, 'jetstream'), { recursive: true });
    const lost = cli(['train', '--resume', runDir, '--json'], { timeoutMs: 180_000 });
    expect(lost.code, lost.stderr).toBe(0);
    expect(lost.stderr).toContain(`the run log of ${runId} is gone`);
    expect(lost.json).toMatchObject({ steps: 12, paramsHash: hash, resumed: { committedBefore: 0, runLogLost: true, finished: false } });

    const over = cli(['train', '--topology', 'tiny', '--steps', '5', '--run-dir', runDir, '--overwrite', '--json']);
    expect(over.code, over.stderr).toBe(0);
    expect(over.json!.runId).not.toBe(runId);
    expect(over.json).toMatchObject({ steps: 5, paramsHash: runReference(parseTopology(preset('tiny')), 5).paramsHash });
  }, 600_000);
});

describe('a checkpoint that cannot be written', () => {
  it('ends the run with exit 1 naming the step and why (and nothing of the run is left); with checkpoint.onWriteError: continue the run goes on and its summary says none was written', async () => {
    const blocked = () => {
      const runDir = join(tempDir(), 'run');
      mkdirSync(runDir);
      writeFileSync(join(runDir, 'checkpoints'), 'a file where the checkpoint directory goes\n');
      return runDir;
    };
    const runDir = blocked();
    const r = cli(['train', '--topology', 'tiny', '--steps', '15', '--run-dir', runDir]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/the checkpoint of step 9 could not be written: .*(ENOTDIR|EEXIST)/);
    expect(processesOf(runDir)).toEqual([]);

    const t = { ...parseTopology(preset('tiny')), checkpoint: { everySteps: 10, keep: 3, onWriteError: 'continue' } };
    const file = join(tempDir(), 'tiny-no-checkpoints.json');
    writeFileSync(file, JSON.stringify(t));
    const goOn = cli(['train', '--topology', file, '--steps', '15', '--run-dir', blocked(), '--json']);
    expect(goOn.code, goOn.stderr).toBe(0);
    expect(goOn.stderr).toMatch(/the checkpoint of step 9 could not be written: .*; going on without it/);
    expect(goOn.json!.checkpoints).toMatchObject({ written: 0, failed: [{ step: 9 }] });
    expect(goOn.json!.paramsHash).toBe(runReference(parseTopology(preset('tiny')), 15).paramsHash);
  }, 300_000);
});

it('the run directory names its owner while it runs', () => {
  // a fresh run that ended leaves owner.json naming the launcher that ran it, and the lock it held is free
  const runDir = join(tempDir(), 'run');
  const r = cli(['train', '--topology', 'tiny', '--steps', '2', '--run-dir', runDir]);
  expect(r.code, r.stderr).toBe(0);
  const owner = JSON.parse(readFileSync(join(runDir, 'owner.json'), 'utf8'));
  expect(owner).toMatchObject({ pid: expect.any(Number), command: expect.stringContaining(`--run-dir ${runDir}`) });
  expect(existsSync(join(runDir, 'owner.lock'))).toBe(true);
  expect(execFileSync('flock', ['--nonblock', join(runDir, 'owner.lock'), 'true']).length).toBe(0);
}, 120_000);
