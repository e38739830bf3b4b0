import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { ModeledRun, NOTABLE_KINDS, RunEvent, type StepEvent } from '@lockstep/topology';
import { UsageError } from '../errors.ts';
import { RUN_FILES } from './recorder.ts';
import { makeDirs } from '../private.ts';

/** Where runs go unless LOCKSTEP_RUNS_DIR says otherwise. */
export const DEFAULT_RUNS_DIR = join('.lockstep', 'runs');

const RunsDirEnv = z.string().min(1).max(4096);

/** The runs folder: LOCKSTEP_RUNS_DIR, or .lockstep/runs under the working directory. */
export function runsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LOCKSTEP_RUNS_DIR === undefined) return DEFAULT_RUNS_DIR;
  const r = RunsDirEnv.safeParse(env.LOCKSTEP_RUNS_DIR);
  if (!r.success) throw new UsageError('LOCKSTEP_RUNS_DIR: must be a directory path (1-4096 characters)');
  return r.data;
}

/**
 * Point `<runs>/latest` at `runDir` when the run directory is inside the runs folder (a run elsewhere, --run-dir,
 * leaves it alone). The link is relative and replaced atomically.
 */
export function pointLatestAt(runs: string, runDir: string): void {
  if (resolve(dirname(runDir)) !== resolve(runs)) return;
  makeDirs(runs);
  const tmp = join(runs, `.latest-${process.pid}`);
  try {
    symlinkSync(basename(runDir), tmp);
    renameSync(tmp, join(runs, 'latest'));
  } catch {
    // a runs folder on a filesystem without symlinks: `lockstep runs` still lists the run
  }
}

/** The directory of a run named on the command line: a directory holding run.json, or a run id (or `latest`) in the runs folder. */
export function findRun(arg: string, runs = runsDir()): string {
  if (existsSync(join(arg, 'run.json'))) return realpathSync(arg);
  const dir = join(runs, arg);
  if (existsSync(join(dir, 'run.json'))) return realpathSync(dir);
  throw new UsageError(`${arg}: not a run (neither a run directory nor a run id under ${runs}); lockstep runs lists them`);
}

/** One run as `lockstep runs` and `lockstep status` describe it. */
export interface RunListing {
  id: string;
  dir: string;
  topology: string;
  /** Steps asked for, and committed so far (replays not counted). */
  steps: number;
  committed: number;
  /** done, failed (with the failure's kind or error name), running (its launcher is alive), or stopped (it ended without a summary: killed). */
  outcome: 'done' | 'failed' | 'running' | 'stopped';
  detail: string | null;
  paramsHash: string | null;
  /** When it started (epoch ms), from run.json's time. */
  startedAt: number;
  launcherPid: number | null;
  lastStep: StepEvent | null;
  /** A finished `compute: modeled` run's figures in modeled time (summary.json's `modeled`), else null. */
  modeled: ModeledRun | null;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The lines of a JSON-lines file that parse as run events (a line cut short by a kill is skipped). */
export function readEvents(file: string): RunEvent[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: RunEvent[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    try {
      const r = RunEvent.safeParse(JSON.parse(line));
      if (r.success) out.push(r.data);
    } catch {
      // a torn last line
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const Summary = z.object({
  paramsHash: z.string().nullable().optional(),
  error: z.object({ name: z.string(), message: z.string(), kind: z.string().optional() }).optional(),
  // a block this version cannot read does not hide the rest of the summary
  modeled: ModeledRun.nullable().optional().catch(null),
});

/** What a run directory says about its run. */
export function describeRun(dir: string): RunListing {
  const info = z.object({ runId: z.string(), steps: z.number() }).safeParse(readJson(join(dir, 'run.json')));
  const topo = z.object({ name: z.string() }).safeParse(readJson(join(dir, 'topology.json')));
  const steps = readEvents(join(dir, RUN_FILES.steps)).filter((e): e is StepEvent => e.kind === 'step');
  const committed = new Set(steps.filter((s) => !s.replayed).map((s) => s.step)).size;
  const events = readEvents(join(dir, RUN_FILES.events));
  const started = events.filter((e) => e.kind === 'run' && e.state === 'started').at(-1);
  const launcherPid = started?.kind === 'run' ? started.pid : null;
  const summary = Summary.safeParse(readJson(join(dir, RUN_FILES.summary)));
  let outcome: RunListing['outcome'];
  let detail: string | null = null;
  if (summary.success && summary.data.error) {
    outcome = 'failed';
    detail = summary.data.error.kind ?? summary.data.error.name;
  } else if (summary.success) outcome = 'done';
  else outcome = launcherPid !== null && alive(launcherPid) ? 'running' : 'stopped';
  return {
    id: info.success ? info.data.runId : basename(dir),
    dir,
    topology: topo.success ? topo.data.name : '-',
    steps: info.success ? info.data.steps : 0,
    committed,
    outcome,
    detail,
    paramsHash: (summary.success ? summary.data.paramsHash : null) ?? steps.at(-1)?.paramsHash ?? null,
    startedAt: started ? started.at / 1000 : statSync(join(dir, 'run.json')).mtimeMs,
    launcherPid,
    lastStep: steps.at(-1) ?? null,
    modeled: (summary.success ? summary.data.modeled : null) ?? null,
  };
}

/** Every run in the runs folder (directories holding run.json), oldest first. */
export function listRuns(runs = runsDir()): RunListing[] {
  let names: string[];
  try {
    names = readdirSync(runs);
  } catch {
    return [];
  }
  return names
    .filter((n) => !n.startsWith('.') && n !== 'latest' && !lstatSync(join(runs, n)).isSymbolicLink())
    .filter((n) => existsSync(join(runs, n, 'run.json')))
    .map((n) => describeRun(join(runs, n)))
    .sort((a, b) => a.startedAt - b.startedAt);
}

/** The notable events of a run (events.jsonl), newest last. */
export function notableEvents(dir: string): RunEvent[] {
  return readEvents(join(dir, RUN_FILES.events)).filter((e) => NOTABLE_KINDS.includes(e.kind));
}
