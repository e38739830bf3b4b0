import { existsSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { checkpointSteps } from '@lockstep/actors';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LogLevel } from '@lockstep/actors';
import type { DcnProxy } from '@lockstep/infra';
import {
  causeMatches,
  checkpointDirName,
  DCN_ACTIONS,
  isPresetName,
  parseScenarioText,
  parseTopology,
  preset,
  type CrashPoint,
  type FailureKind,
  type ProcessFault,
  type Scenario,
  timelineProblems,
  type Topology,
} from '@lockstep/topology';
import { RunFailed, UsageError } from './errors.ts';
import { readInputFile } from './input.ts';
import { launch, type TrainResult } from './launcher.ts';
import type { StepLine } from './protocol.ts';
import { runReference } from './reference.ts';
import { processName, type ProcessFaultAction, type ProcessFaults } from './faults.ts';
import { nowMicros, type RunRecorder } from './record/recorder.ts';

/**
 * The fault class of a scenario, for the figures: what it does first among
 * checkpoint tearing, DCN faults, process kills, process stops and message faults.
 */
export function faultClass(s: Scenario): string {
  const acts = new Set(s.timeline.map((f) => f.action));
  if (acts.has('tear')) return 'checkpoint';
  if (s.timeline.some((f) => f.target === 'dcn')) return 'dcn';
  if (acts.has('kill')) return s.expect.outcome === 'fails' ? 'unrecoverable' : 'crash';
  if (acts.has('stop')) return s.expect.outcome === 'fails' ? 'unrecoverable' : 'stall';
  return 'message';
}

/** What `lockstep chaos --json` reports for one scenario. */
export interface ScenarioResult {
  name: string;
  faultClass: string;
  /** Steps the client kept in flight (the scenario's dispatch.depth, or chaos --dispatch-depth). */
  dispatchDepth: number;
  /** The in-pod collectives (the scenario's `collectives.inPod`, or chaos --collectives). */
  inPod: 'direct' | 'chain';
  /** Why the scenario was not run at this depth (its fault needs a window deeper dispatch opens), or null: it ran. */
  notApplicable: string | null;
  passed: boolean;
  /** Why it failed its expectation, when it did. */
  problems: string[];
  expected: Scenario['expect']['outcome'];
  error: string | null;
  /** The kind of the client's failure the run ended with (null: none, or the run ended some other way). */
  failure: FailureKind | null;
  faultsInjected: number;
  stepsCommitted: number;
  duplicateCommits: number;
  skippedSteps: number;
  hashMismatches: number;
  retriedAttempts: number;
  /** Useful work: committed steps / step attempts run (committed plus retried). */
  goodput: number;
  /** From the first process fault to the next commit (null without process faults, or no commit after). */
  recoveryMs: number | null;
  /** Steps run again after a checkpoint restore, and the restores. */
  stepsReplayed: number;
  restores: number;
  wallMs: number;
}

/**
 * Read, validate and check a scenario file against its topology before anything starts: its topology a preset
 * (with the scenario's settings still valid), every target one the topology has, at most one `inPhase` fault
 * a process. Any problem is a UsageError (exit 2) naming the file and the entry.
 */
export function loadScenario(file: string): Scenario {
  const s = parseScenarioText(readInputFile(file, 'scenario'), file);
  const t = scenarioTopology(s);
  const problems = timelineProblems(s, t);
  if (problems.length > 0) throw new UsageError(`scenario ${file}: ${problems.join('; ')}`);
  armedCrashPoints(s, t); // throws on two for one process
  return s;
}

export function scenarioFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new UsageError(`--dir: cannot read ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const files = names
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(dir, f));
  // none run is not a pass: a mistyped folder would say "0 passed, 0 failed" and exit 0
  if (files.length === 0) throw new UsageError(`--dir: ${dir} holds no scenario files (*.yaml, *.yml)`);
  return files;
}

/** A scenario's topology: its preset with the scenario's settings; `dispatchDepth` (chaos --dispatch-depth) replaces its steps in flight. */
export function scenarioTopology(s: Scenario, dispatchDepth?: number, inPod?: 'direct' | 'chain'): Topology {
  if (!isPresetName(s.topology)) throw new UsageError(`scenario ${s.name}: topology "${s.topology}" is not a preset`);
  const base = preset(s.topology);
  return parseTopology(
    {
      ...base,
      training: { ...base.training, seed: s.seed ?? base.training.seed },
      deadlines: { ...base.deadlines, ...s.deadlines },
      heartbeat: { ...base.heartbeat, ...s.heartbeat },
      recovery: { ...base.recovery, ...s.recovery },
      dispatch: { ...base.dispatch, ...s.dispatch, ...(dispatchDepth === undefined ? {} : { depth: dispatchDepth }) },
      faults: s.faults ?? base.faults,
      collectives: { ...base.collectives, ...s.collectives, ...(inPod === undefined ? {} : { inPod }) },
    },
    `scenario ${s.name}`,
  );
}

/** The crash point each host process is armed with (process name -> point): at most one a process. */
function armedCrashPoints(s: Scenario, t: Topology): Map<string, CrashPoint> {
  const armed = new Map<string, CrashPoint>();
  s.timeline.forEach((f, i) => {
    if (!f.inPhase) return;
    const name = processName(t, f.target);
    if (armed.has(name)) throw new UsageError(`scenario ${s.name}: timeline[${i}]: more than one inPhase fault for ${name}`);
    armed.set(name, {
      host: Number(f.target.split('/')[2]),
      step: f.atStep,
      phase: f.inPhase,
      signal: f.action === 'kill' ? 'SIGKILL' : 'SIGSTOP',
      ...(f.onPrepared ? { onPrepared: true } : {}),
    });
  });
  return armed;
}

/** Cut every replica of shard 0 of the newest checkpoint with a manifest to half its length, as a crash mid-write on a filesystem without atomic rename would. */
function tearNewestCheckpoint(dir: string): string | undefined {
  const step = checkpointSteps(dir).find((s) => existsSync(join(dir, checkpointDirName(s), 'manifest.json')));
  if (step === undefined) return undefined;
  const torn: string[] = [];
  for (const f of readdirSync(join(dir, checkpointDirName(step)))) {
    if (!/^pod\d+-host0\.ckpt$/.test(f)) continue;
    const file = join(dir, checkpointDirName(step), f);
    truncateSync(file, Math.floor(statSync(file).size / 2));
    torn.push(file);
  }
  return torn.length ? `step ${step}: ${torn.length} files` : undefined;
}

/** A run id for a scenario's run: `c-<time>-<scenario>`, cut to a run id's 63 characters. */
export function chaosRunId(scenario: string): string {
  const name = scenario.toLowerCase().replace(/[^a-z0-9-]+/g, '-');
  return `c-${Date.now().toString(36)}-${name}`.slice(0, 63).replace(/-+$/, '');
}

/** Run one scenario with real processes, inject its faults, and check the invariants. */
export async function runScenario(
  s: Scenario,
  opts: {
    log: Logger;
    runDir: string;
    logLevel?: LogLevel;
    runId?: string;
    runsDir?: string;
    dispatchDepth?: number;
    inPod?: 'direct' | 'chain';
  },
): Promise<ScenarioResult> {
  const t = scenarioTopology(s, opts.dispatchDepth, opts.inPod);
  // a crash point that fires only on prepared parameters needs a step in flight behind another: not run with one at a time
  if (t.dispatch.depth < 2 && s.timeline.some((f) => f.onPrepared))
    return notRun(
      s,
      t,
      `an onPrepared crash point needs dispatch.depth >= 2 (a host computes on prepared parameters only then); depth ${t.dispatch.depth}`,
    );
  const commits: (StepLine & { at: number })[] = [];
  const injectedAt: number[] = [];
  // faults on a first commit, and faults on a commit replayed after a checkpoint restore, each in step order
  const pending = s.timeline.filter((f) => !f.inPhase && !f.replayed).sort((a, b) => a.atStep - b.atStep);
  const onReplay = s.timeline.filter((f) => f.replayed).sort((a, b) => a.atStep - b.atStep);
  // faults at an exact phase are armed inside the host's process (it signals itself), on its first start only
  const armed = armedCrashPoints(s, t);
  const processEnv = Object.fromEntries([...armed].map(([name, point]) => [name, { LOCKSTEP_CRASH_POINT: JSON.stringify(point) }]));
  const restarts: { name: string; at: number }[] = [];
  let torn = 0;
  const dcnLinks: { proxy: DcnProxy }[] = [];
  const timers: ReturnType<typeof setTimeout>[] = [];
  const started = performance.now();
  /** Inject one fault of the timeline, `afterMs` from now. */
  const inject = (f: ProcessFault) => {
    timers.push(
      setTimeout(() => {
        if (DCN_ACTIONS.includes(f.action)) {
          for (const { proxy } of dcnLinks) {
            if (f.action === 'cut') proxy.cut();
            else if (f.action === 'cut-one-way') proxy.cutOneWay(f.direction);
            else if (f.action === 'heal') proxy.heal();
            else if (f.action === 'latency') proxy.latency(f.value ?? 0);
            else if (f.action === 'bandwidth') proxy.bandwidth(f.value ?? 0);
          }
          if (f.action !== 'heal') injectedAt.push(performance.now());
          noteFault('dcn', f.action, f.value !== undefined ? String(f.value) : f.direction);
          opts.log.warn({ dcn: f.action, value: f.value, direction: f.direction }, 'DCN fault');
          return;
        }
        if (f.action === 'tear') {
          const what = tearNewestCheckpoint(join(opts.runDir, 'checkpoints'));
          if (what) {
            torn++; // not a recovery start: nothing notices a torn checkpoint until a restore needs it
            noteFault('checkpoints', 'tear', what);
            opts.log.warn({ torn: what }, 'checkpoint torn');
          }
          return;
        }
        // the same path as the status page's kill button: the process's supervisor signals it, and records the fault
        if (faults?.inject(f.target, f.action as ProcessFaultAction)) injectedAt.push(performance.now());
      }, f.afterMs),
    );
  };
  let result: TrainResult | undefined;
  let error: Error | undefined;
  let record: RunRecorder | undefined;
  let faults: ProcessFaults | undefined;
  /** A fault injected from here, in the run's record. */
  const noteFault = (target: string, action: string, detail?: string) =>
    record?.record({ kind: 'fault', actor: target, at: nowMicros(), action, ...(detail ? { detail } : {}) });
  try {
    result = await launch({
      topology: t,
      steps: s.steps,
      runDir: opts.runDir,
      runId: opts.runId,
      runsDir: opts.runsDir,
      onRecord: (r) => {
        record = r;
      },
      log: opts.log,
      logLevel: opts.logLevel,
      processEnv,
      dcnProxy: s.timeline.some((f) => f.target === 'dcn'),
      onDcn: (links) => dcnLinks.push(...links),
      onFaults: (f) => {
        faults = f;
      },
      onRestart: (r) => restarts.push({ name: r.process, at: r.at }),
      onStep: (line) => {
        commits.push({ ...line, at: performance.now() });
        while (pending.length > 0 && pending[0].atStep <= line.step) inject(pending.shift()!);
      },
      onReplayed: (line) => {
        while (onReplay.length > 0 && onReplay[0].atStep <= line.step) inject(onReplay.shift()!);
      },
    });
  } catch (e) {
    error = e as Error;
    result = (e as { summary?: TrainResult }).summary;
  } finally {
    for (const x of timers) clearTimeout(x);
  }

  const steps = commits.map((c) => c.step);
  const unique = new Set(steps);
  const max = steps.length ? Math.max(...steps) : -1;
  let skipped = 0;
  for (let i = 0; i <= max; i++) if (!unique.has(i)) skipped++;
  // a self-inflicted crash is seen when the supervisor restarts the process
  const faultTimes = [...injectedAt, ...restarts.map((r) => r.at)];
  const armedKills = [...armed].filter(([, point]) => point.signal === 'SIGKILL').map(([name]) => name);
  const firedKills = armedKills.filter((name) => restarts.some((r) => r.name === name));
  const firstFault = faultTimes.length ? Math.min(...faultTimes) : undefined;
  const after = firstFault === undefined ? undefined : commits.find((c) => c.at > firstFault);
  const r: ScenarioResult = {
    name: s.name,
    faultClass: faultClass(s),
    dispatchDepth: t.dispatch.depth,
    inPod: t.collectives.inPod,
    notApplicable: null,
    passed: false,
    problems: [],
    expected: s.expect.outcome,
    error: error ? error.message.split('\n')[0] : null,
    failure: error instanceof RunFailed ? (error.kind ?? null) : null,
    faultsInjected: (result?.faultsInjected ?? 0) + injectedAt.length + firedKills.length + torn,
    stepsCommitted: unique.size,
    duplicateCommits: steps.length - unique.size,
    skippedSteps: skipped,
    hashMismatches: commits.filter((c) => !c.podsAgree).length,
    retriedAttempts: result?.retried.length ?? 0,
    goodput: unique.size / Math.max(1, unique.size + (result?.retried.length ?? 0) + (result?.replayedSteps ?? 0)),
    recoveryMs: firstFault !== undefined && after ? after.at - firstFault : null,
    stepsReplayed: result?.replayedSteps ?? 0,
    restores: result?.restores.length ?? 0,
    wallMs: performance.now() - started,
  };
  const problem = (ok: boolean, what: string) => ok || r.problems.push(what);
  problem(r.duplicateCommits === 0, `${r.duplicateCommits} steps committed twice`);
  problem(r.skippedSteps === 0, `${r.skippedSteps} steps skipped`);
  problem(r.hashMismatches === 0, `pods disagreed at ${r.hashMismatches} committed steps`);
  problem(result?.replayedHashesMatch ?? true, 'a replayed step did not reproduce the hash it was committed with');
  problem(
    firedKills.length === armedKills.length,
    `crash point never reached in ${armedKills.filter((n) => !firedKills.includes(n)).join(', ')}`,
  );
  if (s.expect.outcome === 'recovers') {
    problem(!error, `expected to recover, failed: ${r.error}`);
    // a fault that never fired proves nothing: the scenario does not pass without it
    for (const f of [...pending, ...onReplay])
      problem(false, `the ${f.action} of ${f.target} at ${f.replayed ? 'the replay of ' : ''}step ${f.atStep} never fired`);
    problem(r.stepsCommitted === s.steps, `committed ${r.stepsCommitted} of ${s.steps} steps`);
    const retried = new Set(result?.retried.map((f) => f.kind));
    for (const kind of s.expect.retried ?? [])
      problem(retried.has(kind), `expected an attempt retried for ${kind}, retried for: ${[...retried].join(', ') || 'none'}`);
    if (result && !error) {
      const ref = runReference(t, s.steps);
      problem(
        result.paramsHash === ref.paramsHash,
        `final paramsHash ${result.paramsHash?.slice(0, 12)} differs from the fault-free ${ref.paramsHash.slice(0, 12)}`,
      );
      problem(result.podsIdenticalEveryStep, 'pods not identical at every step');
    }
  } else {
    problem(Boolean(error), 'expected to fail, but the run finished');
    const { failure, cause, error: pattern } = s.expect;
    const got = error instanceof RunFailed ? error.failure : undefined;
    if (failure !== undefined) problem(r.failure === failure, `expected a ${failure} failure, got ${r.failure ?? 'none'}: ${r.error}`);
    if (cause !== undefined)
      problem(causeMatches(got?.cause, cause), `expected a cause with ${JSON.stringify(cause)}, got ${JSON.stringify(got?.cause ?? null)}`);
    if (pattern !== undefined) problem(!error || new RegExp(pattern).test(error.message), `error does not match /${pattern}/: ${r.error}`);
  }
  r.passed = r.problems.length === 0;
  return r;
}

/** A scenario not run at this depth: neither passed nor failed, and left out of every figure. */
function notRun(s: Scenario, t: Topology, why: string): ScenarioResult {
  return {
    name: s.name,
    faultClass: faultClass(s),
    dispatchDepth: t.dispatch.depth,
    inPod: t.collectives.inPod,
    notApplicable: why,
    passed: false,
    problems: [],
    expected: s.expect.outcome,
    error: null,
    failure: null,
    faultsInjected: 0,
    stepsCommitted: 0,
    duplicateCommits: 0,
    skippedSteps: 0,
    hashMismatches: 0,
    retriedAttempts: 0,
    goodput: 0,
    recoveryMs: null,
    stepsReplayed: 0,
    restores: 0,
    wallMs: 0,
  };
}

/** Figures over a set of scenario results (those not run at their depth left out): pass count, goodput over every attempt run, recovery p50 and max; also per fault class. */
export function chaosSummary(all: ScenarioResult[]): ChaosFigures & { byClass: Record<string, ChaosFigures> } {
  const results = all.filter((r) => r.notApplicable === null);
  const byClass: Record<string, ChaosFigures> = {};
  for (const c of [...new Set(results.map((r) => r.faultClass))].sort()) byClass[c] = figures(results.filter((r) => r.faultClass === c));
  return { ...figures(results), byClass };
}

export interface ChaosFigures {
  passed: number;
  run: number;
  duplicateCommits: number;
  skippedSteps: number;
  hashMismatches: number;
  stepsReplayed: number;
  goodput: number;
  recoveryMs: { p50: number; max: number; n: number } | null;
}

function figures(results: ScenarioResult[]): ChaosFigures {
  const committed = results.reduce((n, r) => n + r.stepsCommitted, 0);
  const attempts = results.reduce((n, r) => n + r.stepsCommitted + r.retriedAttempts + r.stepsReplayed, 0);
  const rec = results.flatMap((r) => (r.recoveryMs === null ? [] : [r.recoveryMs])).sort((a, b) => a - b);
  return {
    passed: results.filter((r) => r.passed).length,
    run: results.length,
    duplicateCommits: results.reduce((n, r) => n + r.duplicateCommits, 0),
    skippedSteps: results.reduce((n, r) => n + r.skippedSteps, 0),
    hashMismatches: results.reduce((n, r) => n + r.hashMismatches, 0),
    stepsReplayed: results.reduce((n, r) => n + r.stepsReplayed, 0),
    goodput: attempts === 0 ? 1 : committed / attempts,
    recoveryMs: rec.length ? { p50: rec[Math.floor((rec.length - 1) / 2)], max: rec[rec.length - 1], n: rec.length } : null,
  };
}
