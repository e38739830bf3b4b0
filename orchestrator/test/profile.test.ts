import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { costOf, summarizeProfiles } from '../src/profile.ts';

describe('CPU profiles summarized by cost', () => {
  it('costOf: a frame goes to the library or part of lockstep its source is in', () => {
    expect(costOf('../../node_modules/xstate/dist/raise-effbee0c.esm.js', 'microstep')).toBe('xstate');
    expect(costOf('../../node_modules/@nats-io/nats-core/lib/parser.js', 'parse')).toBe('NATS client');
    expect(costOf('../../node_modules/zod/v4/core/schemas.js', 'run')).toBe('zod');
    expect(costOf('../../actors/src/wire/edge.ts', 'onMessage')).toBe('edge');
    expect(costOf('../../actors/src/host/host.setup.ts', 'enterPhase')).toBe('machines and adapters');
    expect(costOf('../../topology/src/frame.ts', 'frame')).toBe('serialization and checksums');
    expect(costOf('', 'parse')).toBe('serialization and checksums');
    expect(costOf('', 'fsync')).toBe('disk (run log, checkpoints)');
    expect(costOf('node:internal/timers', 'insert')).toBe('timers');
    expect(costOf('', 'writev')).toBe('sockets and streams');
    expect(costOf('node:internal/stream_base_commons', 'onStreamRead')).toBe('sockets and streams');
    expect(costOf('', '(garbage collector)')).toBe('GC');
    expect(costOf('', '(idle)')).toBeUndefined();
  });

  it('a real process under node --cpu-prof: its busy frames go by their source (here a module in node_modules/zod) and the shares add up to 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-prof-'));
    const lib = join(dir, 'node_modules', 'zod');
    mkdirSync(lib, { recursive: true });
    writeFileSync(
      join(lib, 'busy.js'),
      'let n = 0; const end = Date.now() + 400; while (Date.now() < end) n += Math.sqrt(n); setTimeout(() => {}, 300);\n',
    );
    const out = join(dir, 'profiles');
    const r = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${out}`, join(lib, 'busy.js')], { timeout: 30_000 });
    expect(r.status).toBe(0);
    const s = summarizeProfiles(out, 4);
    expect(s.processes).toBe(1);
    expect(s.costs[0].cost).toBe('zod');
    expect(s.costs[0].share).toBeGreaterThan(0.5);
    expect(s.costs.reduce((a, c) => a + c.share, 0)).toBeCloseTo(1, 6);
  });

  it('no profile, or a file that is not one, is an error naming the directory or file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-prof-'));
    expect(() => summarizeProfiles(dir, 1)).toThrow(`no .cpuprofile files in ${dir}`);
    writeFileSync(join(dir, 'x.cpuprofile'), JSON.stringify({ nodes: 'no' }));
    expect(() => summarizeProfiles(dir, 1)).toThrow(`${join(dir, 'x.cpuprofile')} is not a V8 CPU profile`);
  });
});
