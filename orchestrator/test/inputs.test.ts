import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tempDir } from './helpers.ts';

/** A user error: exit 2, what stderr says in one line that names `field`, and no stack trace. */
function refused(r: ReturnType<typeof cli>, field: RegExp) {
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(field);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toMatch(/RangeError|TypeError|Maximum call stack/);
}

/** A topology file (JSON is YAML): a small valid one with `over` laid over its top-level fields. */
const topologyFile = (dir: string, over: Record<string, unknown>) => {
  const file = join(dir, 't.yaml');
  const base = {
    name: 't',
    pods: 2,
    hostsPerPod: 2,
    model: { inputDim: 8, hiddenDim: 8, outputDim: 2 },
    training: { seed: 1, globalBatch: 8, optimizer: { kind: 'adam', lr: 0.01 } },
  };
  writeFileSync(file, JSON.stringify({ ...base, ...over }));
  return file;
};

const scenarioFile = (dir: string, timeline: string) => {
  const file = join(dir, 's.yaml');
  writeFileSync(file, `name: s\ntopology: tiny\nsteps: 6\ntimeline:\n${timeline}\nexpect: { outcome: recovers }\n`);
  return file;
};

describe('settings that cannot work are refused before anything starts (exit 2, naming the field)', () => {
  it.each([
    ['deadlines.stepMs above a Node timer', { deadlines: { stepMs: 2 ** 31 } }, /deadlines\.stepMs: must be <= 86400000/],
    ['heartbeat.intervalMs above a Node timer', { heartbeat: { intervalMs: 2 ** 32 } }, /heartbeat\.intervalMs: must be <= 60000/],
    ['heartbeat.misses 1', { heartbeat: { intervalMs: 100, misses: 1 } }, /heartbeat\.misses: must be >= 2/],
    ['a model of 10^12 parameters', { model: { inputDim: 1e6, hiddenDim: 1e6, outputDim: 2 } }, /model\.inputDim: must be <= 65536/],
    [
      'a globalBatch of 2^40',
      { training: { seed: 1, globalBatch: 2 ** 40, optimizer: { kind: 'adam', lr: 0.01 } } },
      /training\.globalBatch: must be <= 1048576/,
    ],
    ['wire.maxControlBytes of 2^40', { wire: { maxControlBytes: 2 ** 40 } }, /wire\.maxControlBytes: must be <= 1000000/],
  ])('%s', (_name, over, field) => {
    refused(cli(['topology', '--topology', topologyFile(tempDir(), over)]), field);
  });

  it('train with an out-of-range duration exits 2 before starting any process', () => {
    const dir = tempDir();
    const r = cli([
      'train',
      '--topology',
      topologyFile(dir, { deadlines: { phaseMs: 99999999999 } }),
      '--steps',
      '2',
      '--run-dir',
      join(dir, 'run'),
    ]);
    refused(r, /deadlines\.phaseMs: must be <= 86400000/);
    expect(r.stderr).not.toMatch(/starting/);
  });

  it('a topology file larger than 1 MiB is refused without reading it', () => {
    const dir = tempDir();
    const file = join(dir, 'big.yaml');
    writeFileSync(file, `# ${'x'.repeat(50 * 1024 * 1024)}\n`);
    refused(cli(['topology', '--topology', file]), /--topology: .*big\.yaml is 52428803 bytes; at most 1048576 are read/);
  });
});

describe('scenario files are checked against their topology before anything starts', () => {
  it('a fault aimed at host/9/9 on tiny is exit 2 naming the entry', () => {
    const dir = tempDir();
    const r = cli([
      'chaos',
      scenarioFile(dir, '  - { atStep: 1, action: kill, target: client }\n  - { atStep: 2, action: kill, target: host/9/9 }'),
    ]);
    refused(r, /timeline\[1\]\.target: host\/9\/9: topology tiny has pods 0\.\.1/);
    expect(r.stderr).not.toMatch(/chaos: s\.\.\./); // nothing started
  });

  it('a fault timed after the last step is exit 2 naming the entry', () => {
    const dir = tempDir();
    refused(
      cli(['chaos', scenarioFile(dir, '  - { atStep: 6, action: kill, target: client }')]),
      /timeline\.0\.atStep: must be < steps \(6\)/,
    );
  });

  it('a scenario with an out-of-range duration is exit 2 naming it', () => {
    const dir = tempDir();
    refused(
      cli(['chaos', scenarioFile(dir, '  - { atStep: 1, afterMs: 2147483648, action: kill, target: client }')]),
      /timeline\.0\.afterMs: must be <= 86400000/,
    );
  });

  it('a scenario directory that is not there is exit 2 naming it', () => {
    refused(cli(['chaos', '--all', '--dir', join(tempDir(), 'nowhere')]), /--dir: cannot read .*nowhere \(ENOENT\)/);
  });
});

describe('every user error is one line (exit 2)', () => {
  it('--run-dir naming a file, or a path under a file', () => {
    const dir = tempDir();
    const file = join(dir, 'afile');
    writeFileSync(file, 'x');
    for (const [arg, said] of [
      [file, /--run-dir: .*afile: is a file, not a directory/],
      [join(file, 'run'), /--run-dir: .*afile\/run: .*afile is a file, not a directory/],
    ] as const) {
      const r = cli(['train', '--topology', 'tiny', '--steps', '2', '--run-dir', arg]);
      refused(r, said);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('--resume of an absolute path names that path, not one under .lockstep/runs', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'norun'));
    for (const arg of [join(dir, 'norun'), join(dir, 'missing')]) {
      const r = cli(['train', '--resume', arg], { cwd: dir });
      refused(r, new RegExp(`--resume: ${arg} is not a run \\(cannot read ${join(arg, 'run.json')} \\(ENOENT\\)\\)`));
      expect(r.stderr).not.toMatch(/\.lockstep/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    // a run id is looked up under .lockstep/runs, and that path is what is named
    const r = cli(['train', '--resume', 'r-nothere'], { cwd: dir });
    refused(r, /--resume: r-nothere is not a run \(cannot read \.lockstep\/runs\/r-nothere\/run\.json \(ENOENT\)\)/);
  });
});
