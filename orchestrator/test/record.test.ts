import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostPhases, RunEvent, StepEvent } from '@lockstep/topology';
import { cliPath, parseTrace, readEvents } from '../src/index.ts';
import { cli, tempDir } from './helpers.ts';

const STEPS = 6;
const HOSTS = ['host/0/0', 'host/0/1', 'host/1/0', 'host/1/1'];

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);

describe('what a run leaves behind', () => {
  const runs = tempDir('lockstep-runs-');
  const env = { LOCKSTEP_RUNS_DIR: runs };
  let result: Record<string, unknown>;
  let runDir: string;

  beforeAll(() => {
    const r = cli(['train', '--topology', 'tiny', '--steps', String(STEPS), '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    result = r.json!;
    runDir = result.runDir as string;
  }, 120_000);

  it('summary.json is the object train --json prints', () => {
    expect(JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))).toEqual(result);
  });

  it('steps.jsonl has one line per committed step, with every host phase time of every host', () => {
    const steps = lines(join(runDir, 'steps.jsonl')).map((l) => StepEvent.parse(JSON.parse(l)));
    expect(steps.map((s) => s.step)).toEqual([...Array(STEPS).keys()]);
    for (const s of steps) {
      expect(Object.keys(s.hosts).sort()).toEqual(HOSTS);
      for (const h of HOSTS) expect(Object.keys(s.hosts[h]).sort()).toEqual([...hostPhases].sort());
      // the slowest host's time of a phase is the largest of the hosts' (to the microsecond the slices carry)
      for (const p of hostPhases) expect(Math.max(...HOSTS.map((h) => s.hosts[h][p]!))).toBeCloseTo(s.phaseMs[p]!, 2);
      expect(s.podHashes).toEqual([s.paramsHash, s.paramsHash]);
      expect(s.retried).toEqual([]);
    }
    expect(steps.at(-1)!.paramsHash).toBe(result.paramsHash);
  });

  it('trace.json parses and holds a slice for every host and phase of every step, and the exchange as flows', () => {
    const text = readFileSync(join(runDir, 'trace.json'), 'utf8');
    const trace = JSON.parse(text) as { ph: string; name: string; pid: number; tid: number; args?: Record<string, unknown> }[];
    const threads = new Map(trace.filter((e) => e.name === 'thread_name').map((e) => [`${e.pid}/${e.tid}`, e.args!.name as string]));
    const slices = new Set(
      trace.filter((e) => e.ph === 'X').map((e) => `${threads.get(`${e.pid}/${e.tid}`)} ${e.name} ${e.args!.step} ${e.args!.attempt}`),
    );
    for (let step = 0; step < STEPS; step++)
      for (const h of HOSTS) for (const p of hostPhases) expect(slices, `${h} ${p} ${step}`).toContain(`${h} ${p} ${step} 0`);
    // each host sends its pod's gradient to the matching host of the other pod, and both ends are in the trace
    const exchange = trace.filter((e) => e.name === 'grad.exchange');
    expect(exchange.filter((e) => e.ph === 's').length).toBe(STEPS * HOSTS.length);
    expect(exchange.filter((e) => e.ph === 'f').length).toBe(STEPS * HOSTS.length);
    // one process track per OS process: 3 nats-servers, 2 pods, 4 hosts, the client, the launcher
    expect(trace.filter((e) => e.name === 'process_name').length).toBe(11);
  });

  it('events.jsonl records the run starting and finishing, and every process start and exit', () => {
    const events = readEvents(join(runDir, 'events.jsonl'));
    expect(events.filter((e) => e.kind === 'run').map((e) => (e as { state: string }).state)).toEqual(['started', 'finished']);
    expect(events.filter((e) => e.kind === 'start').length).toBe(10);
    expect(events.filter((e) => e.kind === 'exit').length).toBe(10);
    for (const l of lines(join(runDir, 'events.jsonl'))) expect(RunEvent.safeParse(JSON.parse(l)).success).toBe(true);
  });

  it('latest points at the run; lockstep runs lists it and lockstep status says it is done', () => {
    expect(readlinkSync(join(runs, 'latest'))).toBe(result.runId);
    const list = cli(['runs', '--json'], { env });
    expect(list.code).toBe(0);
    expect(list.json!.runs).toEqual([
      expect.objectContaining({
        id: result.runId,
        topology: 'tiny',
        steps: STEPS,
        committed: STEPS,
        outcome: 'done',
        paramsHash: result.paramsHash,
      }),
    ]);
    const status = cli(['status', '--json'], { env });
    expect(status.code).toBe(0);
    expect(status.json).toMatchObject({ id: result.runId, outcome: 'done', committed: STEPS, retried: 0, restarts: 0 });
    const human = cli(['status', String(result.runId)], { env });
    expect(human.stdout).toMatch(/steps committed\s+6 of 6/);
  });

  it('lockstep logs --actor of an actor the run does not have is exit 2 naming the ones it has (it printed nothing, exit 0)', () => {
    const r = cli(['logs', '--actor', 'host/9/9'], { env });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^lockstep: UsageError: --actor: host\/9\/9 is not in this run's logs; its processes: .*host-0-1.*\n$/);
  });

  it("lockstep logs prints every process's lines, in time order", () => {
    const r = cli(['logs'], { env });
    expect(r.code, r.stderr).toBe(0);
    const printed = r.stdout.trim().split('\n');
    // every process's log with a line in it shows up, named
    const processes = [
      'nats-pod-0',
      'nats-pod-1',
      'nats-runlog',
      'pod-0',
      'pod-1',
      'host-0-0',
      'host-0-1',
      'host-1-0',
      'host-1-1',
      'client',
    ];
    for (const p of processes) {
      expect(lines(join(runDir, 'logs', `${p}.log`)).length, p).toBeGreaterThan(0);
      expect(
        printed.some((l) => l.includes(` ${p}`)),
        p,
      ).toBe(true);
    }
    const total = processes.reduce((n, p) => n + lines(join(runDir, 'logs', `${p}.log`)).length, 0);
    expect(printed.length).toBe(total);
    const times = printed.map((l) => /^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\]/.exec(l)!.slice(1).map(Number));
    const ms = times.map(([h, m, s, f]) => ((h * 60 + m) * 60 + s) * 1000 + f);
    for (let i = 1; i < ms.length; i++) expect(ms[i], printed[i]).toBeGreaterThanOrEqual(ms[i - 1]);
    // the client says what happened at the default level: every committed step
    expect(printed.filter((l) => /client: step committed/.test(l)).length).toBe(STEPS);
    const one = cli(['logs', '--actor', 'host/0/1'], { env });
    expect(
      one.stdout
        .trim()
        .split('\n')
        .every((l) => l.includes('host-0-1')),
    ).toBe(true);
    const bad = cli(['logs', '--actor', 'Host 0'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^lockstep: UsageError: --actor: must be an actor/);
  });
});

describe('a killed run', () => {
  it('a launcher killed with SIGKILL mid-run leaves a trace.json that loads, and status says it stopped', async () => {
    const runs = tempDir('lockstep-runs-');
    const env = { ...process.env, LOCKSTEP_RUNS_DIR: runs };
    const child = spawn(process.execPath, [cliPath, 'train', '--topology', 'tiny', '--steps', '100000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    const runDir = join(runs, 'latest');
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const deadline = Date.now() + 60_000;
    const committed = () => (existsSync(join(runDir, 'steps.jsonl')) ? lines(join(runDir, 'steps.jsonl')).length : 0);
    const forwards = () => {
      try {
        return parseTrace(readFileSync(join(runDir, 'trace.json'), 'utf8')).filter((e) => e.ph === 'X' && e.name === 'forward').length;
      } catch {
        return 0; // not there yet, or read while a write was half done
      }
    };
    // killed once three steps are committed and their hosts' slices written
    while (committed() < 3 || forwards() < 3 * HOSTS.length) {
      if (Date.now() > deadline) throw new Error(`no 3 steps within 60 s:\n${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    // nothing cleans up after a SIGKILLed launcher: its role processes leave when their stdin closes; stop the nats-servers it started
    for (const e of readEvents(join(runDir, 'events.jsonl')))
      if (e.kind === 'start' && e.actor.startsWith('nats-'))
        try {
          process.kill(e.pid, 'SIGKILL');
        } catch {
          // gone
        }
    const text = readFileSync(join(runDir, 'trace.json'), 'utf8');
    expect(() => JSON.parse(text)).toThrow(); // unterminated: the launcher never closed it
    const trace = parseTrace(text);
    const forward = trace.filter((e) => e.ph === 'X' && e.name === 'forward');
    expect(forward.length).toBeGreaterThanOrEqual(3 * HOSTS.length);
    const status = cli(['status', '--json'], { env: { LOCKSTEP_RUNS_DIR: runs } });
    expect(status.json).toMatchObject({ outcome: 'stopped' });
    expect(status.json!.committed).toBeGreaterThanOrEqual(3);
  }, 120_000);
});
