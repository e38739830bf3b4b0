import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tempDir } from './helpers.ts';

describe('the CLI people expect', () => {
  it('--version prints the package version', () => {
    const r = cli(['--version']);
    expect(r.code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('--help lists the role commands apart from the user commands', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    const [user, roles] = r.stdout.split(/^Role processes.*$/m);
    for (const c of ['train', 'reference', 'chaos', 'sim', 'runs', 'status', 'logs']) expect(user).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const c of ['pod', 'host', 'client']) {
      expect(roles).toMatch(new RegExp(`^  ${c} `, 'm'));
      expect(user).not.toMatch(new RegExp(`^  ${c} `, 'm'));
    }
  });

  it('every bad flag is one line in one style, exit 2, no stack trace', () => {
    const cases: [string[], RegExp][] = [
      [['train', '--steps', 'x'], /^lockstep: UsageError: --steps: must be a number\n$/],
      [['compose', '--steps', 'x'], /^lockstep: UsageError: --steps: must be a number\n$/],
      [['chaos', '--all', '--dir', 'nosuch'], /^lockstep: UsageError: --dir: cannot read nosuch \(ENOENT\)\n$/],
      // a folder of no scenarios ran none and passed (0 passed, 0 failed, exit 0)
      [['chaos', '--all', '--dir', '.'], /^lockstep: UsageError: --dir: \. holds no scenario files \(\*\.yaml, \*\.yml\)\n$/],
      [['train', '--bogus'], /^lockstep: UsageError: unknown option '--bogus'\n$/],
      // an empty --topology (or LOCKSTEP_TOPOLOGY=) was said in zod's words: Too small: expected string to have >=1 characters
      [['train', '-t', ''], /^lockstep: UsageError: --topology: must name a preset \(tiny, demo, palm-540b\) or a topology file\n$/],
      [['sim', '-t', ''], /^lockstep: UsageError: --topology: must be one of tiny, demo, palm-540b\n$/],
      // a resumed run keeps its topology, model, process layout and directory: these were silently ignored
      [
        ['train', '--resume', 'r-x', '-t', 'tiny'],
        /^lockstep: UsageError: --topology: does not go with --resume \(a resumed run keeps its own\)\n$/,
      ],
      [
        ['train', '--resume', 'r-x', '--model', 'large'],
        /^lockstep: UsageError: --model: does not go with --resume \(a resumed run keeps its own\)\n$/,
      ],
      [
        ['train', '--resume', 'r-x', '--collectives', 'chain'],
        /^lockstep: UsageError: --collectives: does not go with --resume \(a resumed run keeps its own\)\n$/,
      ],
      [['train', '--collectives', 'ring'], /^lockstep: UsageError: --collectives: must be direct or chain\n$/],
      [['sim', '--collectives', 'ring'], /^lockstep: UsageError: --collectives: must be direct or chain\n$/],
      [['chaos', '--collectives', 'ring', 'x.yaml'], /^lockstep: UsageError: --collectives: must be direct or chain\n$/],
      // --all ran every scenario and left the file named beside it unread; --dir without --all was ignored
      [['chaos', '--all', 'x.yaml'], /^lockstep: UsageError: chaos: a scenario file and --all do not go together\n$/],
      [['chaos', '--dir', 'elsewhere', 'x.yaml'], /^lockstep: UsageError: chaos: --dir goes with --all\n$/],
      // a number past 2^53 breaks two rules (a whole number, the bound): one line, the bound's
      [['train', '--steps', '99999999999999999999'], /^lockstep: UsageError: --steps: must be <= 1000000\n$/],
      [['train', '--dispatch-depth', '99999999999999999999'], /^lockstep: UsageError: --dispatch-depth: must be <= 8\n$/],
      [['chaos', '--log-level', 'loud', 'x.yaml'], /^lockstep: UsageError: option '--log-level <level>' argument 'loud' is invalid/],
    ];
    for (const [args, message] of cases) {
      const r = cli(args, { cwd: tempDir() });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.replace(/^lockstep: orchestrator\/dist is older.*\n/, ''), args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('a directory that cannot be made under /proc is exit 2 at once (Node recursive mkdir spins there for ever)', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ['train', '-t', 'tiny', '-s', '1'],
        { LOCKSTEP_RUNS_DIR: '/proc/lockstep-nope' },
        /run directory \/proc\/lockstep-nope\/r-[^:]+: cannot be made \(ENOENT\)/,
      ],
      [
        ['train', '-t', 'tiny', '-s', '1', '--run-dir', '/proc/lockstep-nope/r'],
        {},
        /run directory \/proc\/lockstep-nope\/r: cannot be made \(ENOENT\)/,
      ],
      [['sim', '--seed', '1', '--trace', '--out', '/proc/lockstep-nope'], {}, /--out: \/proc\/lockstep-nope: ENOENT/],
    ];
    for (const [args, env, message] of cases) {
      const r = cli(args, { cwd: tempDir(), env, timeoutMs: 20_000 });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('bench --out that cannot be a directory is exit 2 before it benchmarks (it failed minutes later, at the end)', () => {
    const r = cli(['bench', '--out', '/etc/passwd/results'], { cwd: tempDir(), timeoutMs: 20_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('lockstep: UsageError: --out: /etc/passwd/results: ENOTDIR\n');
  });

  it('--run-dir of a directory that holds files but no run is refused and left as it was (it was made 0700 and filled, and --overwrite then emptied it)', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'precious.txt'), 'mine');
    chmodSync(dir, 0o755);
    for (const extra of [[], ['--overwrite']]) {
      const r = cli(['train', '-t', 'tiny', '-s', '1', '--run-dir', dir, ...extra], { cwd: tempDir() });
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr).toMatch(
        /^lockstep: UsageError: --run-dir: .* holds files and no run \(precious\.txt\); give a new or empty directory\n$/m,
      );
      expect(readdirSync(dir)).toEqual(['precious.txt']);
      expect(statSync(dir).mode & 0o777).toBe(0o755);
    }
  });

  it('a named pipe given as a topology, scenario or schedule file is refused at once (opening it waited for a writer for ever)', () => {
    const fifo = join(tempDir(), 'pipe.yaml');
    execFileSync('mkfifo', [fifo]);
    for (const [args, what] of [
      [['topology', '-t', fifo], '--topology'],
      [['chaos', fifo], 'scenario'],
      [['sim', '--schedule', fifo], '--schedule'],
    ] as const) {
      const r = cli([...args], { cwd: tempDir(), timeoutMs: 20_000 });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(`lockstep: UsageError: ${what}: ${fifo} is not a regular file\n`);
    }
  });

  it('LOCKSTEP_* environment variables set the common flags; a flag given wins', () => {
    const env = { LOCKSTEP_TOPOLOGY: 'tiny', LOCKSTEP_STEPS: '3' };
    const r = cli(['reference', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ topology: 'tiny', steps: 3 });
    expect(cli(['reference', '--json', '--steps', '2'], { env }).json).toMatchObject({ steps: 2 });
    const bad = cli(['reference'], { env: { LOCKSTEP_STEPS: 'many' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--steps: must be a number/);
    expect(cli(['train', '--help']).stdout).toMatch(/env:\s+LOCKSTEP_STEPS/);
  });
});
