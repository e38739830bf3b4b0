import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimSchedule } from '@lockstep/topology';
import { cliPath } from '../src/index.ts';
import { alive, cli, pgrep, tempDir, until } from './helpers.ts';

/**
 * The fixed set of seeds every change runs (CI): 500 schedules of 20 steps on tiny, the profiles in turn, with the
 * preset's two steps in flight; and the first 200 of them again with one step in flight (a subset, for CI's time).
 */
const CI_SEEDS = 500;
const CI_SEEDS_DEPTH_1 = 200;
/** And 200 on demo (4 hosts a pod) with the in-pod collectives as chains. */
const CI_SEEDS_CHAIN = 200;

describe('lockstep sim (the real CLI)', () => {
  it(`${CI_SEEDS} seeded schedules over every fault profile: every one recovers to the reference bits, none violates an invariant or hangs`, () => {
    const r = cli(['sim', '--seeds', String(CI_SEEDS), '--faults', 'every', '--json'], { timeoutMs: 600_000 });
    expect(r.stderr).not.toMatch(/seed \d+ \(\w+\) (failed|violation|hang)/);
    expect(r.code).toBe(0);
    const s = r.json!;
    expect(s.schedules).toBe(CI_SEEDS);
    expect(s.failed).toEqual([]);
    expect(s.outcomes).toEqual({ recovered: CI_SEEDS, failed: 0, violation: 0, hang: 0 });
    // the profiles did inject faults: actors restarted, attempts were retried, checkpoints restored
    expect(s.restarts as number).toBeGreaterThan(CI_SEEDS / 4);
    expect(s.retried as number).toBeGreaterThan(0);
    expect(s.restores as number).toBeGreaterThan(0);
    for (const k of ['schedulesPerMinute', 'simulatedSecondsPerWallSecond']) expect(s[k] as number).toBeGreaterThan(0);
    expect(s.eventsHash).toMatch(/^[0-9a-f]{64}$/);
  }, 600_000);

  it(`the first ${CI_SEEDS_DEPTH_1} of them with one step in flight: every one recovers`, () => {
    const r = cli(['sim', '--seeds', String(CI_SEEDS_DEPTH_1), '--faults', 'every', '--dispatch-depth', '1', '--json'], {
      timeoutMs: 600_000,
    });
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ dispatchDepth: 1, schedules: CI_SEEDS_DEPTH_1, failed: [] });
    expect(r.json!.outcomes).toEqual({ recovered: CI_SEEDS_DEPTH_1, failed: 0, violation: 0, hang: 0 });
  }, 600_000);

  it(`${CI_SEEDS_CHAIN} schedules on demo with chain collectives (a middle link to lose): every one recovers`, () => {
    const r = cli(['sim', '-t', 'demo', '--seeds', String(CI_SEEDS_CHAIN), '--faults', 'every', '--collectives', 'chain', '--json'], {
      timeoutMs: 600_000,
    });
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ inPod: 'chain', schedules: CI_SEEDS_CHAIN, failed: [] });
    expect(r.json!.outcomes).toEqual({ recovered: CI_SEEDS_CHAIN, failed: 0, violation: 0, hang: 0 });
  }, 600_000);

  it('its worker processes end with it, however it ends (SIGKILL included)', async () => {
    const sim = spawn(process.execPath, [cliPath, 'sim', '--seeds', '5000', '--workers', '2'], { stdio: 'ignore' });
    const workers = () => pgrep(['-P', String(sim.pid), '-f', 'sim-worker.js']);
    await until('two workers', 30_000, () => (workers().length === 2 ? true : undefined));
    const pids = workers();
    sim.kill('SIGKILL');
    await until('the workers to end', 30_000, () => (pids.every((pid) => !alive(pid)) ? true : undefined));
    expect(pids.filter(alive)).toEqual([]);
  }, 60_000);

  it('a seed replays exactly (same events hash), its trace and schedule are written, and the schedule file replays it too', () => {
    const dir = tempDir();
    const a = cli(['sim', '--seed', '7', '--faults', 'all', '--trace', '--out', dir, '--json']);
    const b = cli(['sim', '--seed', '7', '--faults', 'all', '--json']);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(a.json!.eventsHash).toBe(b.json!.eventsHash);
    const trace = readFileSync(join(dir, 'sim-7.trace.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(trace.filter((e) => e.what === 'deliver').length).toBeGreaterThan(100);
    expect(trace.some((e) => e.what === 'state' && e.actor === 'client' && e.phase === 'done')).toBe(true);
    const schedule = SimSchedule.parse(JSON.parse(readFileSync(join(dir, 'sim-7.schedule.json'), 'utf8')));
    expect(schedule.seed).toBe(7);
    const c = cli(['sim', '--schedule', join(dir, 'sim-7.schedule.json'), '--out', dir, '--json']);
    expect(c.code).toBe(0);
    expect(c.json!.eventsHash).toBe(a.json!.eventsHash);
  }, 120_000);

  it('a failing schedule exits 1 naming its failure, and --shrink writes a smaller schedule that fails the same way', () => {
    const dir = tempDir();
    // a DCN cut that never heals, with crashes that do not matter to it: no recovery is possible
    const file = join(dir, 'cut.json');
    const schedule: SimSchedule = {
      seed: 5,
      profile: 'all',
      topology: 'tiny',
      steps: 6,
      computeMs: 2,
      net: { drop: 0.01, duplicate: 0.01, delay: 0, delayMaxMs: 0 },
      faultsUntilMs: 100,
      faults: [
        { kind: 'crash', at: 5, target: 'host/0/1', downMs: 100 },
        { kind: 'partition', at: 20, direction: 'both', durationMs: 36_000_000 },
        { kind: 'crash', at: 40, target: 'pod/1', downMs: 50 },
      ],
    };
    writeFileSync(file, JSON.stringify(schedule));
    const r = cli(['sim', '--schedule', file, '--shrink', '--out', dir, '--json'], { timeoutMs: 300_000 });
    expect(r.code).toBe(1);
    expect((r.json!.outcome as { kind: string }).kind).toBe('failed');
    const shrunk = SimSchedule.parse(JSON.parse(readFileSync(join(dir, 'sim-5.shrunk.json'), 'utf8')));
    // fewer faults (the never-ending cut stays), fewer steps, no message faults; and it still fails the same way
    expect(shrunk.faults.length).toBeLessThan(schedule.faults.length);
    expect(shrunk.faults).toContainEqual(schedule.faults[1]);
    for (const x of shrunk.faults) expect(schedule.faults).toContainEqual(x);
    expect(shrunk.steps).toBeLessThan(schedule.steps);
    expect(shrunk.net.drop + shrunk.net.duplicate).toBe(0);
    const again = cli(['sim', '--schedule', join(dir, 'sim-5.shrunk.json'), '--json']);
    expect(again.code).toBe(1);
    expect(again.json!.outcome).toMatchObject({ kind: 'failed', failure: (r.json!.outcome as { failure: string }).failure });
  }, 300_000);

  it('bad flags and a bad schedule file exit 2 naming the field', () => {
    const dir = tempDir();
    const seeds = cli(['sim', '--seeds', '0']);
    expect(seeds.code).toBe(2);
    expect(seeds.stderr).toMatch(/seeds.*must be >= 1/);
    const faults = cli(['sim', '--faults', 'earthquakes']);
    expect(faults.code).toBe(2);
    expect(faults.stderr).toMatch(/faults.*must be one of/);
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ seed: 1, profile: 'all', topology: 'tiny', steps: 3, net: { drop: 2 } }));
    const bad = cli(['sim', '--schedule', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/net\.drop/);
    expect(cli(['sim', '--schedule', join(dir, 'missing.json')]).code).toBe(2);
    // a seed written as anything but digits, flags that do not go together, a crash aimed at an actor tiny does not have
    const hex = cli(['sim', '--seed', '0x10']);
    expect(hex.code).toBe(2);
    expect(hex.stderr).toMatch(/--seed: must be a whole number written in digits/);
    const both = cli(['sim', '--seed', '3', '--seeds', '10']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--seed and --seeds do not go together/);
    const ghost = join(dir, 'ghost.json');
    writeFileSync(
      ghost,
      JSON.stringify({
        seed: 1,
        profile: 'crashes',
        topology: 'tiny',
        steps: 3,
        net: { drop: 0, duplicate: 0, delay: 0, delayMaxMs: 0 },
        faultsUntilMs: 0,
        faults: [{ kind: 'crash', at: 5, target: 'host/9/9', downMs: 10 }],
      }),
    );
    const g = cli(['sim', '--schedule', ghost]);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/faults\.0\.target: host\/9\/9 is not an actor/);
  }, 120_000);
});
