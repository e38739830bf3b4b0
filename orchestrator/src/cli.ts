import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { makeDirs } from './private.ts';
import { loadavg, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { z } from 'zod';
import {
  describeIssues,
  InvalidInput,
  InvalidTopology,
  isPresetName,
  type PresetName,
  modelPresets,
  parameterCount,
  presetNames,
  RunId,
  scenarioJsonSchema,
  topologyJsonSchema,
  SimProfile,
  SimSchedule,
  preset,
  scheduleProblems,
  type ModeledRun,
} from '@lockstep/topology';
import { COMPOSE_UI_PORT, writeCompose } from './compose.ts';
import { freePort } from './ports.ts';
import { DEFAULT_IMAGE, DEFAULT_NATS_IMAGE, ImageRef, imageDefaults } from '@lockstep/infra';
import {
  actorsOf,
  createLogger,
  decodeRecord,
  describeOutcome,
  livesOf,
  logLevels,
  recordLineProblem,
  replayLife,
  type LogLevel,
  type RecordLine,
  type ReplayResult,
} from '@lockstep/actors';
import { defaultWorkers, isFailure, runOne, runPlan, scheduleFor, shrink, summarize } from './sim.ts';
import { NatsServerMissing, ProcessExited, RunFailed, UsageError } from './errors.ts';
import { assertLocalShape, hostGroups, launch, newRunId, RunInfo, type TrainResult } from './launcher.ts';
import { DEFAULT_UI, UiAddress } from './ui/address.ts';
import { startStatusPage } from './ui/statuspage.ts';
import { loadTopology } from './load.ts';
import { MAX_INPUT_FILE_BYTES, readInputFile } from './input.ts';
import { fmtLoss, Progress, table } from './progress.ts';
import { runReference } from './reference.ts';
import { benchMarkdown, runBench, runScale, scaleSection, writeBench } from './bench.ts';
import { chaosRunId, chaosSummary, loadScenario, runScenario, scenarioFiles, type ScenarioResult } from './chaos.ts';
import { clientRole, hostRole, natsAuth, parseFlags, podRole } from './roles.ts';
import { watchRun } from './ui/watch.ts';
import { ContainerKiller } from './ui/containerkill.ts';
import { errorJson } from './record/outcome.ts';
import { addRecordCommands } from './record/commands.ts';
import { DEFAULT_RUNS_DIR, pointLatestAt, runsDir } from './record/runs.ts';
import { envOf, StepsFlag, TopologyFlag, version } from './flags.ts';
import { addCostModelCommand } from './costmodel.ts';

/** `--collectives`: how the pods run their in-pod reduce-scatter and all-gather (the topology's `collectives.inPod`). */
const InPodFlag = z.enum(['direct', 'chain'], { error: 'must be direct or chain' });

const TrainFlags = z.object({
  topology: TopologyFlag,
  steps: StepsFlag,
  model: z.string().optional(),
  hostsPerProcess: z.coerce.number().int('must be a whole number').min(1, 'must be >= 1').optional(),
  dispatchDepth: z.coerce
    .number({ error: 'must be a number' })
    .min(1, 'must be >= 1')
    .max(8, 'must be <= 8')
    .int('must be a whole number')
    .optional(),
  collectives: InPodFlag.optional(),
  json: z.boolean().default(false),
  logLevel: z.enum(logLevels).default('info'),
  runDir: z.string().optional(),
  natsServer: z.string().optional(),
  resume: z.string().min(1, 'must name a run id or run directory').optional(),
  record: z.boolean().default(false),
  /** --ui alone: the default address; --ui host:port. */
  ui: z
    .union([z.literal(true).transform(() => DEFAULT_UI), z.string()])
    .pipe(UiAddress)
    .optional(),
  overwrite: z.boolean().default(false),
});

const parseTrainFlags = (raw: unknown) => parseFlags(TrainFlags, raw);

const WatchFlags = z.object({
  run: RunId,
  nats: z
    .string()
    .max(4000)
    .transform((s) => s.split(','))
    .pipe(
      z
        .array(z.url({ protocol: /^nats$/, error: 'must be nats://host:port URLs, comma-separated' }))
        .min(1)
        .max(4096),
    ),
  monitor: z.url({ protocol: /^https?$/, error: 'must be an http://host:port URL' }).optional(),
  topology: TopologyFlag,
  steps: StepsFlag,
  ui: UiAddress,
  streams: z.string().min(1).max(4096).optional(),
  recordDir: z.string().min(1).max(4096).optional(),
  runsDir: z.string().min(1).max(4096).optional(),
  kill: z.enum(['none', 'docker'], { error: 'must be none or docker' }).default('none'),
});

/** A whole number written as decimal digits (not "", "0x10" or "1e3"), within [min, max]. */
const count = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number written in digits')
    .transform(Number)
    .pipe(z.number().min(min, `must be >= ${min}`).max(max, `must be <= ${max}`));
const SimFlags = z.object({
  topology: z.string().min(1, `must be one of ${presetNames.join(', ')}`),
  steps: count(1, 10_000),
  seeds: count(1, 1_000_000),
  firstSeed: count(0, 0xffffffff - 1_000_000),
  seed: count(0, 0xffffffff).optional(),
  schedule: z.string().min(1).optional(),
  faults: z.enum([...SimProfile.options, 'every'], { error: `must be one of ${[...SimProfile.options, 'every'].join(', ')}` }),
  workers: count(1, 64),
  computeMs: z
    .string()
    .regex(/^\d{1,6}(\.\d{1,6})?$/, 'must be a number of milliseconds written in digits')
    .transform(Number)
    .pipe(z.number().min(0.01, 'must be >= 0.01').max(60_000, 'must be <= 60000')),
  dispatchDepth: count(1, 8).optional(),
  collectives: InPodFlag.optional(),
  trace: z.union([z.boolean(), z.string().min(1)]).optional(),
  shrink: z.boolean().default(false),
  out: z.string().min(1),
  json: z.boolean().default(false),
});

/** A schedule file (JSON), validated. */
function loadSchedule(file: string): SimSchedule {
  const text = readInputFile(file, '--schedule', 16 * MAX_INPUT_FILE_BYTES);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--schedule: ${file}: not JSON (${(err as Error).message})`);
  }
  const r = SimSchedule.safeParse(value);
  if (!r.success) throw new UsageError(`--schedule: ${file}: ${describeIssues(r.error).join('; ')}`);
  if (!isPresetName(r.data.topology)) throw new UsageError(`--schedule: ${file}: topology: must be one of ${presetNames.join(', ')}`);
  const problems = scheduleProblems(r.data, preset(r.data.topology));
  if (problems.length > 0) throw new UsageError(`--schedule: ${file}: ${problems.join('; ')}`);
  return r.data;
}

/** Which flags of `sim` go together: one seed or a schedule file runs alone; --trace needs one of them. */
function checkSimFlags(cmd: Command, f: { seed?: number; schedule?: string; trace?: unknown }): void {
  const given = (name: string) => cmd.getOptionValueSource(name) === 'cli';
  const conflict = (a: string, b: string) => {
    throw new UsageError(`--${a} and --${b} do not go together`);
  };
  if (f.seed !== undefined && f.schedule !== undefined) conflict('seed', 'schedule');
  if (f.schedule !== undefined) {
    // a schedule file says its topology, steps, profile, compute time and faults itself
    for (const [flag, name] of [
      ['topology', 'topology'],
      ['steps', 'steps'],
      ['faults', 'faults'],
      ['computeMs', 'compute-ms'],
      ['dispatchDepth', 'dispatch-depth'],
      ['collectives', 'collectives'],
      ['seeds', 'seeds'],
      ['firstSeed', 'first-seed'],
      ['workers', 'workers'],
    ] as const)
      if (given(flag)) conflict('schedule', name);
  }
  if (f.seed !== undefined)
    for (const [flag, name] of [
      ['seeds', 'seeds'],
      ['firstSeed', 'first-seed'],
      ['workers', 'workers'],
    ] as const)
      if (given(flag)) conflict('seed', name);
  if (f.trace !== undefined && f.seed === undefined && f.schedule === undefined)
    throw new UsageError('--trace: goes with --seed or --schedule (one schedule)');
}

/** Make the output directory, or say why not. */
function outDir(dir: string): string {
  try {
    makeDirs(dir);
  } catch (err) {
    throw new UsageError(`--out: ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return dir;
}

function writeOut(file: string, text: string): void {
  try {
    writeFileSync(file, text);
  } catch (err) {
    throw new UsageError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * The run a `train --resume` continues: its directory, id and step count, from its run.json. `arg` is a
 * directory when it is a path (absolute, or with a `/`, or a directory that is there), else a run id under
 * `.lockstep/runs`; either way the message names the path looked at.
 */
function priorRun(arg: string): { runDir: string; runId: string; steps: number } {
  const isPath = isAbsolute(arg) || arg.includes(sep) || arg.includes('/') || arg === '.' || arg === '..';
  if (!isPath && !RunId.safeParse(arg).success && !existsSync(arg))
    throw new UsageError(`--resume: ${arg} is neither a run directory nor a run id (letters, digits and dashes)`);
  const runDir = isPath || (existsSync(arg) && statSync(arg).isDirectory()) ? arg : join('.lockstep', 'runs', arg);
  const file = join(runDir, 'run.json');
  let text: string;
  try {
    text = readInputFile(file, '--resume');
  } catch (err) {
    throw new UsageError(`--resume: ${arg} is not a run (${(err as Error).message.replace(/^--resume: /, '')})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--resume: ${file}: not JSON (${(err as Error).message})`);
  }
  const r = RunInfo.safeParse(value);
  if (!r.success) throw new UsageError(`--resume: ${file}: ${describeIssues(r.error).join('; ')}`);
  return { runDir, runId: r.data.runId, steps: r.data.steps };
}

/** A `--run-dir` that cannot hold a run (a file, or under one) is a usage error, said before anything starts. */
function checkRunDir(dir: string): void {
  let at = resolve(dir);
  for (;;) {
    if (existsSync(at)) {
      if (!statSync(at).isDirectory())
        throw new UsageError(
          `--run-dir: ${dir}: ${at === resolve(dir) ? 'is a file, not a directory' : `${at} is a file, not a directory`}`,
        );
      return;
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
}

function printJson(o: unknown) {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function humanTrain(r: TrainResult): string {
  if (r.resumed?.finished)
    return `lockstep train: run ${r.runId} is finished, nothing to do\n${table([
      ['topology', r.topology],
      ['steps', `${r.steps} (all committed before)`],
      ['paramsHash', r.paramsHash ?? '-'],
      ['logs', r.runDir],
    ])}\n`;
  const rows: [string, string][] = [
    ['topology', `${r.topology} (${r.pods.length} pods, ${r.processes} processes)`],
    ['steps', String(r.steps)],
    ['loss first/last', `${fmtLoss(r.loss.first)} -> ${fmtLoss(r.loss.last)}`],
    ['steps/s', r.stepsPerSecond.toFixed(2)],
    ...r.pods.map((p): [string, string] => [`${p.id} paramsHash`, p.paramsHash]),
    ['pods identical at every step', r.podsIdenticalEveryStep ? 'yes' : 'NO'],
    ...(r.faultsInjected > 0 ? ([['faults injected', String(r.faultsInjected)]] as [string, string][]) : []),
    [
      'retried attempts',
      r.retried.length === 0 ? '0' : `${r.retried.length} (${r.retried.map((x) => `step ${x.step} attempt ${x.attempt}`).join(', ')})`,
    ],
    [
      'process restarts',
      r.restarts.length === 0 ? '0' : `${r.restarts.length} (${r.restarts.map((x) => `${x.process} ${x.exit}`).join(', ')})`,
    ],
    ...(r.restores.length > 0
      ? ([
          [
            'checkpoint restores',
            `${r.restores.map((x) => `at step ${x.atStep} to checkpoint ${x.checkpoint}`).join(', ')}; ${r.replayedSteps} steps replayed, ${r.replayedHashesMatch ? 'each with its logged hash' : 'SOME WITH ANOTHER HASH'}`,
          ],
        ] as [string, string][])
      : []),
    [
      'rejected messages',
      r.rejectedTotal === 0
        ? '0'
        : `${r.rejectedTotal} (${Object.entries(r.rejected)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')})`,
    ],
    ...(r.resumed
      ? ([
          [
            'resumed',
            r.resumed.runLogLost ? 'RUN LOG LOST: trained again from step 0' : `after ${r.resumed.committedBefore} committed steps`,
          ],
        ] as [string, string][])
      : []),
    [
      'checkpoints written',
      r.checkpoints.failed.length === 0
        ? String(r.checkpoints.written)
        : `${r.checkpoints.written}; NOT WRITTEN: ${r.checkpoints.failed.map((x) => `step ${x.step} (${x.reason})`).join(', ')}`,
    ],
    ['mean step / exchange ms', `${r.phaseMs.step.toFixed(2)} / ${(r.phaseMs.exchange ?? 0).toFixed(2)}`],
    ['steps in flight (depth / mean)', `${r.dispatchDepth} / ${r.meanStepsInFlight.toFixed(2)}`],
    ['in-pod collectives', r.inPod],
    [
      'hosts waited for the controller',
      `${r.hostsWaitedMs.perStep.toFixed(2)} ms a step (${(r.hostsWaitedMs.total / 1000).toFixed(2)} s in all)`,
    ],
    ...modeledRows(r.modeled),
    ['logs', r.runDir],
  ];
  return `lockstep train: done\n${table(rows)}\n`;
}

/** The summary's rows for a `compute: modeled` run: the modeled system's figures, in modeled time, and the control plane's real cost. */
function modeledRows(m: ModeledRun | null): [string, string][] {
  if (!m) return [];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    [
      'modeled step (cost model)',
      `${m.stepSeconds.toFixed(3)} s (${m.predicted.stepSeconds.toFixed(3)} s; timeScale ${m.timeScale}${m.overlapBackward ? ', exchange overlapped with backward' : ''})`,
    ],
    ['modeled tokens/s', `${(m.tokensPerSecond / 1e3).toFixed(1)}K`],
    ['modeled MFU / HFU', `${pct(m.mfu)} / ${pct(m.hfu)}`],
    ['bytes per host pair', `${m.bytesPerHostPair.toExponential(3)} B (${(m.bytesPerHostPair / 2 ** 30).toFixed(2)} GiB)`],
    ['cross-pod burst', `${m.burstTbps.toFixed(1)} Tbps for ${(1000 * m.burstSeconds).toFixed(1)} ms`],
    ['two-pod scaling (weak)', `${m.twoPodScaling.toFixed(3)}x (cost model ${m.predicted.twoPodScaling.toFixed(3)}x)`],
    ['control plane (real, unscaled)', `${m.controlMsPerStep.toFixed(1)} ms a step (${pct(m.controlFraction)} of the modeled step)`],
  ];
}

export function buildProgram(): Command {
  const program = new Command('lockstep')
    .description('PaLM-style two-pod training over NATS, with xstate actors and fault injection')
    .version(version(), '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // commander's own complaints (an unknown flag, a missing argument) in the one style every bad flag has
      outputError: (s, write) => write(`lockstep: UsageError: ${s.replace(/^error: /, '')}`),
    })
    .commandsGroup('Commands:');

  const topologyOpt = () =>
    new Option('-t, --topology <preset|file>', `preset (${presetNames.join(', ')}) or YAML/JSON file`)
      .default('demo')
      .env(envOf('topology'));
  const stepsOpt = () => new Option('-s, --steps <n>', 'steps to train').default('100').env(envOf('steps'));
  const modelOpt = () =>
    new Option('-m, --model <preset>', `replace the topology's model (${Object.keys(modelPresets).join(', ')})`).env(envOf('model'));

  program
    .command('train')
    .description('train a topology with real processes: nats-servers, pods, hosts and the client')
    .addOption(topologyOpt())
    .addOption(stepsOpt())
    .addOption(modelOpt())
    .option('--hosts-per-process <n>', 'host actors per OS process')
    .option('--dispatch-depth <n>', "steps the client keeps in flight, 1-8 (replaces the topology's dispatch.depth)")
    .option('--collectives <algorithm>', "the in-pod collectives, direct or chain (replaces the topology's collectives.inPod)")
    .option('--json', 'print one JSON object as the last line of stdout')
    .addOption(
      new Option('--log-level <level>', "log level of every process's log (and of the launcher's own lines on stderr, warn unless given)")
        .choices(logLevels)
        .default('info')
        .env(envOf('logLevel')),
    )
    .addOption(
      new Option('--run-dir <dir>', `where configs, logs and the run's record go (default ${DEFAULT_RUNS_DIR}/<run id>)`).env(
        envOf('runDir'),
      ),
    )
    .addOption(new Option('--nats-server <path>', 'the nats-server binary (default: found on PATH)').env(envOf('natsServer')))
    .option(
      '--resume <run>',
      'continue a run that was stopped (a run id under .lockstep/runs, or its directory): restore its newest checkpoint, replay to its last committed step, go on',
    )
    .option('--record', "record every machine's events and messages in <run dir>/record, for lockstep replay")
    .addOption(
      new Option(
        '--ui [host:port]',
        `serve a live status page (hosts, phases, loss, retries, the DCN link, a kill button per host; /status, /events, /metrics) at host:port, default ${DEFAULT_UI}; port 0 picks a free one`,
      ).env('LOCKSTEP_UI'),
    )
    .option('--overwrite', '--run-dir holds another run: delete it and start a new one there (without, train refuses)')
    .action(async (raw, cmd: Command) => {
      const f = parseTrainFlags(raw);
      if (f.resume && f.overwrite) throw new UsageError('--resume and --overwrite do not go together');
      if (f.resume)
        for (const [key, flag] of [
          ['topology', '--topology'],
          ['model', '--model'],
          ['hostsPerProcess', '--hosts-per-process'],
          ['runDir', '--run-dir'],
          ['collectives', '--collectives'],
        ] as const)
          if (cmd.getOptionValueSource(key) === 'cli')
            throw new UsageError(`${flag}: does not go with --resume (a resumed run keeps its own)`);
      if (f.runDir !== undefined) checkRunDir(f.runDir);
      const prior = f.resume ? priorRun(f.resume) : undefined;
      if (prior && cmd.getOptionValueSource('steps') === 'default') f.steps = prior.steps;
      const t = prior
        ? loadTopology(join(prior.runDir, 'topology.json'), { dispatchDepth: f.dispatchDepth })
        : loadTopology(f.topology, {
            model: f.model,
            hostsPerProcess: f.hostsPerProcess,
            dispatchDepth: f.dispatchDepth,
            inPod: f.collectives,
          });
      assertLocalShape(t); // a topology too big for one machine is a usage error, said before anything starts
      const given = cmd.getOptionValueSource('logLevel');
      const log = createLogger((given === 'cli' || given === 'env' ? f.logLevel : 'warn') as LogLevel, { role: 'launcher' });
      const progress = new Progress(f.steps, `train ${t.name}`);
      progress.note(
        `lockstep: ${t.pods} pods x ${t.hostsPerPod} hosts, ${parameterCount(t.model)} parameters, ${f.steps} steps, ${t.dispatch.depth} in flight`,
      );
      progress.note(
        `starting ${t.pods + 1} nats-servers (one a pod, one for the run log) and ${hostGroups(t).length + t.pods + 1} processes...`,
      );
      const runId = prior?.runId ?? newRunId();
      const page = f.ui ? await startStatusPage({ ...f.ui, topology: t, runId, steps: f.steps, log }) : undefined;
      if (page) process.stderr.write(`status page at ${page.url}\n`);
      const outcome: { result?: TrainResult; error?: Error } = {};
      const result = await launch({
        ...page?.hooks,
        topology: t,
        steps: f.steps,
        runDir: prior?.runDir ?? f.runDir,
        runsDir: runsDir(),
        runId,
        resume: prior !== undefined,
        logLevel: f.logLevel as LogLevel,
        natsServer: f.natsServer,
        record: f.record,
        overwrite: f.overwrite,
        log,
        onNote: (line) => progress.note(line),
        onReady: (reached, total) => reached === total && progress.note(`all ${total} pods ready`),
        onStep: (s) => progress.update(s.step + 1, `loss ${s.loss.toPrecision(4)}${s.podsAgree ? '' : ' PODS DIFFER'}`),
      })
        .then((r) => (outcome.result = r))
        .catch((err: Error) => {
          outcome.error = err;
          throw err;
        })
        .finally(() => page?.finish(outcome));
      if (f.json) printJson(result);
      else process.stdout.write(humanTrain(result));
    });

  program
    .command('watch')
    .description(
      "serve the status page of a run started elsewhere (the compose demo's ui service), from the wire, as the observer NATS user (LOCKSTEP_NATS_USER, LOCKSTEP_NATS_PASS)",
    )
    .requiredOption('--run <id>', 'run id')
    .requiredOption('--nats <urls>', "each pod's server, comma-separated, pod 0 first")
    .option('--monitor <url>', "pod 0's server's monitoring endpoint (http://host:port), for the DCN link")
    .addOption(topologyOpt())
    .addOption(stepsOpt())
    .option('--ui <host:port>', 'where to serve the page', DEFAULT_UI)
    .option('--streams <dir>', "the processes' stream files (LOCKSTEP_STREAM_FILE): record the run from them")
    .option(
      '--record-dir <dir>',
      'with --streams: the run directory to write the record in (summary.json, steps.jsonl, events.jsonl, trace.json)',
    )
    .option('--runs-dir <dir>', 'with --streams: a runs folder; the record goes in <run>-<UTC time>/ there, and latest points at it')
    .option(
      '--kill <how>',
      "the page's kill buttons: none, or docker (a host's compose container killed and started again; needs the engine's socket)",
      'none',
    )
    .action(async (raw) => {
      const f = parseFlags(WatchFlags, raw);
      const t = loadTopology(f.topology);
      if (f.nats.length !== t.pods)
        throw new UsageError(`--nats: ${f.nats.length} servers for ${t.pods} pods; give each pod's, pod 0 first`);
      if ((f.recordDir !== undefined || f.runsDir !== undefined) !== (f.streams !== undefined))
        throw new UsageError('--streams: give it with --record-dir or --runs-dir (the stream files, and where the record goes)');
      if (f.recordDir !== undefined && f.runsDir !== undefined) throw new UsageError('--record-dir and --runs-dir do not go together');
      const log = createLogger('warn', { role: 'watch' });
      const auth = natsAuth();
      let runDir = f.recordDir;
      if (f.runsDir !== undefined) {
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
        runDir = join(f.runsDir, `${f.run}-${stamp}`);
        makeDirs(runDir, 0o700);
        pointLatestAt(f.runsDir, runDir);
      }
      const killer = f.kill === 'docker' ? new ContainerKiller(t) : undefined;
      const page = await watchRun({
        ...(runDir !== undefined && f.streams !== undefined ? { record: { runDir, streams: f.streams } } : {}),
        ...(killer ? { kill: (target: string) => killer.inject(target) } : {}),
        onRecorded: (dir) => process.stderr.write(`run record closed: ${dir}\n`),
        ...f.ui,
        topology: t,
        runId: f.run,
        steps: f.steps,
        urls: f.nats,
        monitor: f.monitor ?? null,
        login: auth.user && auth.pass ? { user: auth.user, password: auth.pass } : undefined,
        log,
      });
      process.stderr.write(`status page at ${page.url}\n`);
      // serves until stopped (compose stops it with the run)
      const sig = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      log.info({ sig }, 'stopping the status page');
      await page.stop();
    });

  program
    .command('reference')
    .description('the same training in one process, with the same arithmetic: the bitwise reference for train')
    .addOption(topologyOpt())
    .addOption(stepsOpt())
    .addOption(modelOpt())
    .option('--json', 'print one JSON object as the last line of stdout')
    .action(async (raw) => {
      const f = parseTrainFlags({ ...raw, logLevel: 'warn' });
      const t = loadTopology(f.topology, { model: f.model });
      const progress = new Progress(f.steps, `reference ${t.name}`);
      const r = runReference(t, f.steps, (s, loss) => progress.update(s + 1, `loss ${loss.toPrecision(4)}`));
      const { hashes: _hashes, ...out } = r;
      if (f.json) printJson(out);
      else
        process.stdout.write(
          `lockstep reference: done\n${table([
            ['topology', t.name],
            ['steps', String(r.steps)],
            ['loss first/last', `${fmtLoss(r.loss.first)} -> ${fmtLoss(r.loss.last)}`],
            ['steps/s', r.stepsPerSecond.toFixed(2)],
            ['paramsHash', r.paramsHash],
          ])}\n`,
        );
    });

  program
    .command('topology')
    .description('print a topology with every default filled in (validates a file); --schema: the JSON Schema of topology files')
    .addOption(topologyOpt())
    .addOption(modelOpt())
    .option('--schema', 'print the JSON Schema of topology files and exit')
    .action(async (raw) => {
      if (raw.schema) return printJson(topologyJsonSchema());
      const t = loadTopology(raw.topology, { model: raw.model });
      printJson({ ...t, parameters: parameterCount(t.model) });
    });

  program
    .command('bench')
    .description('measure steps/s and phase times on tiny and demo (small and >=16 MiB gradients) against raw NATS in the same run')
    .option('--small-steps <n>', 'steps of the control-plane runs', '100')
    .option('--large-steps <n>', 'steps of the data-plane runs', '5')
    .option('--sim-seeds <n>', 'lockstep sim schedules (20 steps, tiny) to time; 0: none', '300')
    .option('--sim-palm-steps <n>', 'palm-540b steps to run in the simulator (minutes each here); 0: none', '0')
    .option('--no-dispatch', 'skip the dispatch cases (demo at depth 1 and 2, and with compute held to 10 ms a phase)')
    .option('--profile-steps <n>', 'steps of each CPU-profiled demo run (hosts one and four to a process); 0: none', '100')
    .option('--scale-sizes <list>', 'hosts a pod of the scaling table (2 pods each), comma-separated; none: no table', '4,16,64,256,768')
    .option('--scale-steps <n>', 'steps of each scaling run (two warm-up steps left out of its figures)', '10')
    .option('--scale-only', 'run the scaling table alone')
    .option('--out <dir>', 'where results go', 'bench/results')
    .option('--json', 'print the report as one JSON line')
    .action(async (raw) => {
      const flags = parseFlags(
        z.object({
          scaleSizes: z
            .string()
            .regex(/^(none|\d+(,\d+)*)$/, 'must be a comma-separated list of hosts a pod (e.g. 4,16,64), or none')
            .transform((x) => (x === 'none' ? [] : x.split(',').map(Number)))
            .pipe(z.array(z.number().int().min(1, 'must be >= 1').max(4096, 'must be <= 4096')).max(16, 'at most 16 sizes')),
          scaleSteps: z.coerce.number().int().min(3, 'must be >= 3 (two warm-up steps)').max(10_000, 'must be <= 10000'),
          scaleOnly: z.boolean().default(false),
          smallSteps: z.coerce.number().int().min(1, 'must be >= 1'),
          largeSteps: z.coerce.number().int().min(1, 'must be >= 1'),
          simSeeds: z.coerce.number().int().min(0, 'must be >= 0').max(100_000, 'must be <= 100000'),
          simPalmSteps: z.coerce.number().int().min(0, 'must be >= 0').max(100, 'must be <= 100'),
          dispatch: z.boolean().default(true),
          profileSteps: z.coerce.number().int().min(0, 'must be >= 0').max(10_000, 'must be <= 10000'),
          out: z.string().min(1),
          json: z.boolean().default(false),
        }),
        raw,
      );
      outDir(flags.out); // before minutes of benchmarks, not after them
      const log = createLogger('warn', { role: 'bench' });
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-'));
      const onScaleRow = (line: string) => process.stderr.write(`bench: ${line}\n`);
      if (flags.scaleOnly) {
        const scale = await runScale({ dir, log, sizes: flags.scaleSizes, steps: flags.scaleSteps, onLine: onScaleRow });
        if (flags.json) printJson(scale);
        else
          process.stdout.write(
            `${scaleSection(scale)}\n(load average ${loadavg()
              .map((x) => x.toFixed(2))
              .join(', ')})\n`,
          );
        return;
      }
      process.stderr.write('bench: raw NATS baseline...\n');
      const report = await runBench({
        dir,
        log,
        smallSteps: flags.smallSteps,
        largeSteps: flags.largeSteps,
        simSeeds: flags.simSeeds,
        simPalmSteps: flags.simPalmSteps,
        dispatch: flags.dispatch,
        onDispatch: (line) => process.stderr.write(`bench: ${line}\n`),
        profileSteps: flags.profileSteps,
        scaleSizes: flags.scaleSizes,
        scaleSteps: flags.scaleSteps,
        onScaleRow,
        onCase: (c) =>
          process.stderr.write(
            `bench: ${c.name}: ${c.stepsPerSecond.toFixed(2)} steps/s, step ${c.phaseMs.step.toFixed(1)} ms, exchange ${(c.phaseMs.exchange ?? 0).toFixed(1)} ms\n`,
          ),
      });
      const files = writeBench(report, flags.out);
      if (flags.json) printJson(report);
      else process.stdout.write(`${benchMarkdown(report)}\nwritten: ${files.json}, ${files.md}\n`);
    });

  program
    .command('compose')
    .description('write a docker compose file for a topology (and its NATS configs beside it)')
    .addOption(topologyOpt())
    .addOption(stepsOpt())
    .option('--out <file>', 'the compose file to write', 'infra/compose/<topology>.yaml')
    .option('--run <id>', 'run id', 'compose')
    .option('--image <name>', `the lockstep image; default LOCKSTEP_IMAGE, else ${DEFAULT_IMAGE} (at \`up\`, LOCKSTEP_IMAGE overrides it)`)
    .option(
      '--nats-image <name>',
      `the nats-server image; default LOCKSTEP_NATS_IMAGE, else ${DEFAULT_NATS_IMAGE} (at \`up\`, LOCKSTEP_NATS_IMAGE overrides it)`,
    )
    .option(
      '--ui-port <port>',
      `the status page's port on the machine's loopback, 1-65535; 0 picks a free one now (at \`up\`, LOCKSTEP_UI_PORT overrides it)`,
      String(COMPOSE_UI_PORT),
    )
    .option(
      '--runs-dir <dir>',
      "the runs folder the run's record goes in (bind-mounted into the ui service); default the runs folder (LOCKSTEP_RUNS_DIR, .lockstep/runs)",
    )
    .option('--no-record', 'leave no record (no runs folder mounted)')
    .option('--no-kill', "no kill buttons on the status page (the engine's socket is not mounted into the ui service)")
    .action(async (raw) => {
      const images = imageDefaults(); // LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE (a bad one is refused, named)
      const f = parseFlags(
        z.object({
          topology: TopologyFlag,
          steps: StepsFlag,
          out: z.string().min(1),
          run: RunId,
          image: ImageRef.default(images.image),
          natsImage: ImageRef.default(images.natsImage),
          uiPort: count(0, 65535),
          runsDir: z.string().min(1).max(4096).optional(),
          record: z.boolean().default(true),
          kill: z.boolean().default(true),
        }),
        raw,
      );
      const t = loadTopology(f.topology);
      const out = f.out.replace('<topology>', t.name);
      const uiPort = f.uiPort === 0 ? await freePort() : f.uiPort;
      const files = writeCompose(out, {
        topology: t,
        preset: isPresetName(f.topology) ? f.topology : undefined,
        steps: f.steps,
        runId: f.run,
        image: f.image,
        natsImage: f.natsImage,
        uiPort,
        runsDir: f.record ? (f.runsDir ?? runsDir()) : undefined,
        kill: f.kill,
      });
      process.stdout.write(`${files.join('\n')}\n`);
      process.stderr.write(`status page at http://127.0.0.1:${uiPort}/ (once the file is up)\n`);
    });

  program
    .command('chaos')
    .description(
      'run fault-injection scenarios (YAML) and check the invariants: every step committed once, none skipped, pods identical, final bits equal to a fault-free run',
    )
    .argument('[file]', 'a scenario file')
    .option('--all', 'run every scenario in --dir')
    .option('--dir <dir>', 'scenario directory', 'scenarios')
    .option('--json', 'print one JSON object as the last line of stdout')
    .addOption(
      new Option('--log-level <level>', "log level of every process's log (and of chaos's own lines on stderr, warn unless given)")
        .choices(logLevels)
        .default('info')
        .env(envOf('logLevel')),
    )
    .option('--dispatch-depth <n>', "steps the client keeps in flight in every scenario, 1-8 (default: each scenario's, else its preset's)")
    .option(
      '--collectives <algorithm>',
      "the in-pod collectives of every scenario, direct or chain (default: each scenario's, else its preset's)",
    )
    .option('--schema', 'print the JSON Schema of scenario files and exit')
    .action(async (file: string | undefined, raw, cmd: Command) => {
      if (raw.schema) return printJson(scenarioJsonSchema());
      if (!file && !raw.all) throw new UsageError('chaos: name a scenario file, or pass --all');
      if (file && raw.all) throw new UsageError('chaos: a scenario file and --all do not go together');
      if (!raw.all && cmd.getOptionValueSource('dir') === 'cli') throw new UsageError('chaos: --dir goes with --all');
      const { dispatchDepth, collectives: inPod } = parseFlags(
        z.object({ dispatchDepth: count(1, 8).optional(), collectives: InPodFlag.optional() }),
        { dispatchDepth: raw.dispatchDepth, collectives: raw.collectives },
      );
      const files = raw.all ? scenarioFiles(raw.dir) : [file!];
      const scenarios = files.map(loadScenario);
      const given = cmd.getOptionValueSource('logLevel');
      const log = createLogger((given === 'cli' || given === 'env' ? raw.logLevel : 'warn') as LogLevel, { role: 'chaos' });
      const results: ScenarioResult[] = [];
      const runs = runsDir();
      for (const sc of scenarios) {
        // each scenario's run directory stays in the runs folder, beside train's (lockstep runs, status, logs)
        const runId = chaosRunId(sc.name);
        const runDir = join(runs, runId);
        process.stderr.write(
          `chaos: ${sc.name}${dispatchDepth === undefined ? '' : ` (dispatch depth ${dispatchDepth})`}${inPod === undefined ? '' : ` (${inPod} collectives)`}... (run ${runDir})\n`,
        );
        const r = await runScenario(sc, { log, logLevel: raw.logLevel as LogLevel, runDir, runId, runsDir: runs, dispatchDepth, inPod });
        results.push(r);
        process.stderr.write(
          `chaos: ${sc.name}: ${r.notApplicable ? `not run: ${r.notApplicable}` : r.passed ? 'passed' : `FAILED: ${r.problems.join('; ')}`} (run ${runDir})\n`,
        );
      }
      const passed = results.filter((r) => r.passed).length;
      const notRun = results.filter((r) => r.notApplicable !== null).length;
      const failed = results.length - passed - notRun;
      const summary = chaosSummary(results);
      if (raw.json) printJson({ scenarios: results, passed, failed, notApplicable: notRun, summary });
      else {
        const ms = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(0));
        const rows = results.map((r) =>
          [
            r.name,
            r.faultClass,
            r.notApplicable ? 'n/a' : r.passed ? 'pass' : 'FAIL',
            r.expected,
            r.faultsInjected,
            r.stepsCommitted,
            r.retriedAttempts,
            r.stepsReplayed,
            r.duplicateCommits,
            r.skippedSteps,
            r.hashMismatches,
            ms(r.recoveryMs),
          ].join(' | '),
        );
        const classes = Object.entries(summary.byClass).map(([c, f]) =>
          [
            c,
            `${f.passed}/${f.run}`,
            f.duplicateCommits,
            f.skippedSteps,
            f.hashMismatches,
            f.stepsReplayed,
            `${(f.goodput * 100).toFixed(1)}%`,
            ms(f.recoveryMs?.p50),
            ms(f.recoveryMs?.max),
          ].join(' | '),
        );
        process.stdout.write(
          [
            '| scenario | class | result | expected | faults | steps | retried | replayed | dup commits | skipped | mismatches | recovery ms |',
            '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
            ...rows.map((x) => `| ${x} |`),
            '',
            '| fault class | passed/run | dup commits | skipped | mismatches | replayed | goodput | recovery p50 ms | recovery max ms |',
            '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
            ...classes.map((x) => `| ${x} |`),
            '',
            `goodput ${(summary.goodput * 100).toFixed(1)}% (committed steps / attempts run); duplicate commits ${summary.duplicateCommits}, skipped steps ${summary.skippedSteps}, hash mismatches ${summary.hashMismatches}; recovery ${summary.recoveryMs ? `p50 ${summary.recoveryMs.p50.toFixed(0)} ms, max ${summary.recoveryMs.max.toFixed(0)} ms over ${summary.recoveryMs.n} scenarios` : '-'}`,
            `${passed} passed, ${failed} failed${notRun ? `, ${notRun} not run at this depth` : ''}`,
            '',
          ].join('\n'),
        );
      }
      process.exitCode = failed === 0 ? 0 : 1;
    });

  program
    .command('sim')
    .description(
      'simulate the whole cluster deterministically: the real machines on a simulated clock and network, many seeded fault schedules, each checked for the invariants and for liveness',
    )
    .option('-t, --topology <preset>', `a preset: ${presetNames.join(', ')}`, 'tiny')
    .option('-s, --steps <n>', 'steps of each schedule', '20')
    .option('--seeds <n>', 'how many schedules (seeds first-seed .. first-seed + n - 1)', '100')
    .option('--first-seed <n>', 'the first seed', '1')
    .option('--seed <n>', 'run this one seed (replays it exactly); with --trace, write its trace')
    .option('--schedule <file>', 'run a schedule file (JSON, as --trace or --shrink write it)')
    .option(
      '--faults <profile>',
      `fault profile: ${[...SimProfile.options, 'every'].join(', ')} (every: a profile per seed in turn)`,
      'every',
    )
    .option('--workers <n>', 'worker processes (each runs whole schedules)', String(defaultWorkers()))
    .option('--compute-ms <ms>', 'simulated forward time (backward twice, update half), ms', '2')
    .option('--dispatch-depth <n>', "steps the client keeps in flight, 1-8 (default: the preset's dispatch.depth)")
    .option('--collectives <algorithm>', "the in-pod collectives, direct or chain (default: the preset's collectives.inPod)")
    .option('--trace [file]', 'with --seed or --schedule: write every delivery, fault and restart as JSON lines')
    .option('--shrink', 'shrink each failing schedule to a smaller one that still fails, and write it')
    .option('--out <dir>', 'where --trace and --shrink write their files (the schedule, its trace, the shrunk schedule)', '.')
    .option('--json', 'print one JSON object as the last line of stdout')
    .action(async (raw, cmd: Command) => {
      const f = parseFlags(SimFlags, raw);
      if (!isPresetName(f.topology)) throw new UsageError(`--topology: must be one of ${presetNames.join(', ')}; got ${f.topology}`);
      checkSimFlags(cmd, f);
      const base = {
        topology: f.topology,
        steps: f.steps,
        profile: f.faults,
        computeMs: f.computeMs,
        dispatchDepth: f.dispatchDepth,
        inPod: f.collectives,
      };
      if (f.seed !== undefined || f.schedule !== undefined) {
        const schedule = f.schedule !== undefined ? loadSchedule(f.schedule) : scheduleFor(base, f.seed!);
        const r = await runOne(schedule, { trace: f.trace !== undefined });
        const files: string[] = [];
        if (f.trace !== undefined || f.shrink) outDir(f.out);
        if (f.trace !== undefined && r.trace) {
          const schedFile = join(f.out, `sim-${schedule.seed}.schedule.json`);
          writeOut(schedFile, `${JSON.stringify(schedule, null, 2)}\n`);
          files.push(schedFile);
          const traceFile = typeof f.trace === 'string' ? f.trace : join(f.out, `sim-${schedule.seed}.trace.jsonl`);
          writeOut(traceFile, `${r.trace.map((e) => JSON.stringify(e)).join('\n')}\n`);
          files.push(traceFile);
        }
        let shrunk: { schedule: SimSchedule; tries: number } | undefined;
        if (f.shrink && isFailure(r)) {
          const s = await shrink(schedule);
          const file = join(f.out, `sim-${schedule.seed}.shrunk.json`);
          writeOut(file, `${JSON.stringify(s.schedule, null, 2)}\n`);
          files.push(file);
          shrunk = s;
        }
        const { trace: _, ...line } = r;
        if (f.json) printJson({ ...line, schedule, shrunk: shrunk?.schedule, files });
        else {
          process.stdout.write(
            `${table([
              ['seed', String(schedule.seed)],
              ['profile', schedule.profile],
              ['topology / steps', `${schedule.topology} / ${schedule.steps}`],
              ['dispatch depth', String(schedule.dispatchDepth ?? preset(schedule.topology as PresetName).dispatch.depth)],
              ['in-pod collectives', schedule.inPod ?? preset(schedule.topology as PresetName).collectives.inPod],
              ['outcome', describeOutcome(r.outcome)],
              [
                'faults',
                `${schedule.faults.map((x) => `${x.kind}@${Math.round(x.at)}ms${x.kind === 'crash' ? ` ${x.target}` : ''}`).join(', ') || '-'}${
                  r.faultsFired < schedule.faults.length
                    ? ` (${schedule.faults.length - r.faultsFired} never fired: timed after the run ended)`
                    : ''
                }`,
              ],
              [
                'message faults',
                `drop ${schedule.net.drop.toFixed(3)} dup ${schedule.net.duplicate.toFixed(3)} delay ${schedule.net.delay.toFixed(3)} until ${Math.round(schedule.faultsUntilMs)} ms`,
              ],
              ['steps committed', String(r.stepsCommitted)],
              ['retried / restarts / restores', `${r.retried} / ${r.restarts} / ${r.restores}`],
              ['simulated / wall', `${(r.simulatedMs / 1000).toFixed(2)} s / ${(r.wallMs / 1000).toFixed(2)} s`],
              ['events', String(r.events)],
              ['eventsHash', r.eventsHash],
              ...(shrunk
                ? ([['shrunk to', `${shrunk.schedule.faults.length} faults, ${shrunk.schedule.steps} steps (${shrunk.tries} runs)`]] as [
                    string,
                    string,
                  ][])
                : []),
              ['files', files.join(', ') || '- (--trace writes the schedule and its trace)'],
            ])}\n`,
          );
        }
        process.exitCode = isFailure(r) ? 1 : 0;
        return;
      }
      const plan = { ...base, seeds: Array.from({ length: f.seeds }, (_, i) => f.firstSeed + i), workers: f.workers };
      const progress = new Progress(plan.seeds.length, `sim ${f.topology} ${f.faults}`, process.stderr, true, 'schedules');
      let failures = 0;
      const { lines, wallMs } = await runPlan(plan, (r, done) => {
        if (isFailure(r)) {
          failures++;
          progress.note(`sim: seed ${r.seed} (${r.profile}) ${describeOutcome(r.outcome)}`);
        }
        progress.update(done, `${failures} failing`);
      });
      const summary = summarize(plan, lines, wallMs);
      const shrunk: { seed: number; file: string; faults: number; steps: number }[] = [];
      if (f.shrink) {
        outDir(f.out);
        for (const x of summary.failed.slice(0, 5)) {
          const s = await shrink(scheduleFor(plan, x.seed));
          const file = join(f.out, `sim-${x.seed}.shrunk.json`);
          writeOut(file, `${JSON.stringify(s.schedule, null, 2)}\n`);
          shrunk.push({ seed: x.seed, file, faults: s.schedule.faults.length, steps: s.schedule.steps });
        }
      }
      if (f.json) printJson({ ...summary, shrunk });
      else {
        const o = summary.outcomes;
        process.stdout.write(
          `${table([
            ['topology / steps', `${summary.topology} / ${summary.steps}`],
            ['dispatch depth', String(summary.dispatchDepth)],
            ['in-pod collectives', summary.inPod],
            ['profile', String(summary.profile)],
            ['schedules', `${summary.schedules} (seeds ${plan.seeds[0]}..${plan.seeds.at(-1)})`],
            ['outcomes', `recovered ${o.recovered}, failed ${o.failed}, violation ${o.violation}, hang ${o.hang}`],
            ['retried / restarts / restores', `${summary.retried} / ${summary.restarts} / ${summary.restores}`],
            [
              'schedules per minute',
              `${summary.schedulesPerMinute.toFixed(0)} (${summary.workers} worker${summary.workers === 1 ? '' : 's'})`,
            ],
            ['simulated s per wall s', summary.simulatedSecondsPerWallSecond.toFixed(1)],
            ['events', String(summary.events)],
            ['eventsHash', summary.eventsHash],
          ])}\n`,
        );
        for (const x of summary.failed)
          process.stdout.write(
            `FAILING seed ${x.seed} (${x.profile}): ${x.failure}\n  replay: npx lockstep sim --seed ${x.seed} --faults ${x.profile} -t ${f.topology} -s ${f.steps}${f.computeMs === 2 ? '' : ` --compute-ms ${f.computeMs}`} --dispatch-depth ${summary.dispatchDepth} --collectives ${summary.inPod} --trace\n`,
          );
        for (const x of shrunk)
          process.stdout.write(
            `shrunk seed ${x.seed} to ${x.faults} faults, ${x.steps} steps: ${x.file} (npx lockstep sim --schedule ${x.file})\n`,
          );
        process.stdout.write(`${summary.schedules - summary.failed.length} passed, ${summary.failed.length} failed\n`);
      }
      process.exitCode = summary.failed.length === 0 ? 0 : 1;
    });

  program
    .command('replay')
    .description(
      "feed what a recorded run's machines took (train --record) to fresh machines, and check they decide the same: the same messages, message for message",
    )
    .argument('<run>', 'a run id under .lockstep/runs, or its directory')
    .option('--json', 'print one JSON object as the last line of stdout')
    .action(async (run: string, raw) => {
      const runDir = existsSync(join(run, 'record')) ? run : join('.lockstep', 'runs', run);
      const dir = join(runDir, 'record');
      let files: string[];
      try {
        files = readdirSync(dir)
          .filter((n) => n.endsWith('.jsonl'))
          .sort();
      } catch {
        throw new UsageError(`replay: ${run} has no record (${dir}); record a run with lockstep train --record`);
      }
      if (files.length === 0) throw new UsageError(`replay: ${dir} holds no actor records`);
      const results: ReplayResult[] = [];
      let actors: string[] | undefined;
      const found: string[] = [];
      for (const file of files) {
        const where = join(dir, file);
        const lines = readFileSync(where, 'utf8')
          .split('\n')
          .filter((l) => l.length > 0);
        const decoded: RecordLine[] = lines.map((text, i) => {
          let v: unknown;
          try {
            v = decodeRecord(text);
          } catch (err) {
            throw new UsageError(`replay: ${where}:${i + 1}: not JSON (${(err as Error).message})`);
          }
          const problem = recordLineProblem(v);
          if (problem) throw new UsageError(`replay: ${where}:${i + 1}: ${problem}`);
          return v as RecordLine;
        });
        let lives: RecordLine[][];
        try {
          lives = livesOf(decoded);
        } catch (err) {
          throw new UsageError(`replay: ${where}: ${(err as Error).message}`);
        }
        if (lives.length === 0) throw new UsageError(`replay: ${where}: empty (no machine's input)`);
        const actor = file.replace(/\.jsonl$/, '').replaceAll('-', '/');
        const t = (lives[0][0] as { input: { topology: { pods: number; hostsPerPod: number } } }).input.topology;
        actors ??= actorsOf(t);
        const expected = actors;
        if (!expected.includes(actor))
          throw new UsageError(`replay: ${where}: ${actor} is not an actor of this run (${expected.length} actors)`);
        found.push(actor);
        lives.forEach((life, i) => {
          results.push(replayLife(actor, i + 1, life));
        });
      }
      const missing = (actors ?? []).filter((a) => !found.includes(a));
      if (missing.length > 0)
        throw new UsageError(`replay: ${dir}: no record of ${missing.join(', ')} (every actor of the run must be recorded)`);
      const differ = results.filter((r) => r.divergence);
      if (raw.json) printJson({ runDir, actors: results, same: differ.length === 0 });
      else {
        process.stdout.write(
          [
            '| actor | life | events | messages recorded | messages replayed | same |',
            '|---|---:|---:|---:|---:|---|',
            ...results.map(
              (r) =>
                `| ${r.actor} | ${r.life} | ${r.events} | ${r.recorded} | ${r.replayed} | ${r.divergence ? `NO: message ${r.divergence.index}: recorded ${JSON.stringify(r.divergence.recorded ?? 'nothing')}, replayed ${JSON.stringify(r.divergence.replayed ?? 'nothing')}${r.error ? ` (the machine threw: ${r.error})` : ''}` : 'yes'} |`,
            ),
            '',
            differ.length === 0
              ? `every machine decided the same: ${results.reduce((n, r) => n + r.recorded, 0)} messages from ${results.reduce((n, r) => n + r.events, 0)} events`
              : `${differ.length} of ${results.length} decided differently`,
            '',
          ].join('\n'),
        );
      }
      process.exitCode = differ.length === 0 ? 0 : 1;
    });

  addRecordCommands(program);
  addCostModelCommand(program);

  const role = (name: string, desc: string) =>
    program
      .command(name)
      .helpGroup('Role processes (started by train, compose and the containers; not for direct use):')
      .description(desc)
      .requiredOption('--run <id>', 'run id')
      .requiredOption('--nats <url>', 'NATS server URL(s), comma-separated')
      .requiredOption('--topology <preset|file>', 'topology')
      .addOption(new Option('--log-level <level>', 'log level').choices(logLevels).default('info'));
  role('pod', '(role process) run one pod scheduler')
    .requiredOption('--pod <p>', 'pod index')
    .option('--rejoin', 'restarted after a crash: learn the step from the client')
    .action(async (raw) => {
      process.exitCode = await podRole(raw);
    });
  role('host', '(role process) run host actors of one pod')
    .requiredOption('--pod <p>', 'pod index')
    .requiredOption('--hosts <list>', 'host indices, comma-separated')
    .option('--rejoin', 'restarted after a crash: heal the committed state from host h of another pod')
    .requiredOption('--ckpt-dir <dir>', 'checkpoint directory (shared with the client)')
    .action(async (raw) => {
      process.exitCode = await hostRole(raw);
    });
  role('client', '(role process) run the client; prints JSON lines on stdout')
    .requiredOption('--steps <n>', 'steps to run')
    .option('--first-step <n>', 'first step', '0')
    .requiredOption('--log-nats <url>', 'the run log NATS server (JetStream)')
    .requiredOption('--ckpt-dir <dir>', 'checkpoint directory (shared with the hosts)')
    .option('--resume', "restarted: finish the run log's last commit, then go on")
    .option('--cold', 'with --resume: the whole cluster is new; restore a checkpoint and replay first')
    .action(async (raw) => {
      process.exitCode = await clientRole(raw);
    });
  return program;
}

/** Run the CLI; returns the exit code (0 ok, 1 run failed, 2 bad input or setup). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const e = err as Error;
    const usage = e instanceof UsageError || e instanceof InvalidTopology || e instanceof InvalidInput || e instanceof NatsServerMissing;
    process.stderr.write(`lockstep: ${e.name}: ${e.message}\n`);
    if (json) printJson(errorJson(e));
    if (!usage && !(e instanceof RunFailed) && !(e instanceof ProcessExited)) process.stderr.write(`${e.stack ?? ''}\n`);
    return usage ? 2 : 1;
  }
}
