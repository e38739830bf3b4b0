import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants as osConstants, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  describeIssues,
  hostPhases,
  modeledRun,
  parameterCount,
  RunId,
  type ModeledRun,
  type PhaseTimes,
  type RunLogRecord,
  type Topology,
} from '@lockstep/topology';
import { connectNats, RunLog, RunLogConflict, totalRejections, type LogLevel } from '@lockstep/actors';
import {
  clusterIdentities,
  clusterPlan,
  hostGroups,
  newCredentials,
  type ClusterPlan,
  type Credentials,
  type DcnProxy,
} from '@lockstep/infra';
import { RunFailed, UsageError } from './errors.ts';
import { claimRun, clearRunDir, holdsRun, refuseForeignDir } from './owner.ts';
import { Reaper } from './reaper.ts';
import { localRendering } from './local.ts';
import { privateDir, writePrivate } from './private.ts';
import { findNatsServer, localPorts, spawnNats, startDcnProxies, startNatsServers, type NatsNode } from './nats.ts';
import { spawnRole, stopAll } from './processes.ts';
import { Supervised, type Restart } from './supervisor.ts';
import { ProcessFaults } from './faults.ts';
import { ClientLine, type StepLine, type SummaryLine } from './protocol.ts';
import { nowMicros, RunRecorder } from './record/recorder.ts';
import { errorJson } from './record/outcome.ts';
import { DEFAULT_RUNS_DIR, pointLatestAt } from './record/runs.ts';

export interface LaunchOptions {
  topology: Topology;
  steps: number;
  runId?: string;
  /** Where configs and logs go; default <runsDir>/<runId>. */
  runDir?: string;
  /** The runs folder (default .lockstep/runs): its `latest` link is pointed at a run directory inside it. */
  runsDir?: string;
  /** Called with the run's record as soon as it is open: a caller adds its own events (faults) or watches them (a live view). */
  onRecord?: (record: RunRecorder) => void;
  logLevel?: LogLevel;
  natsServer?: string;
  log: Logger;
  /**
   * Called once the NATS servers are up: the run id, each pod's server URL, each process's credentials and the route
   * login (tests use them to inject traffic), and the plan the run renders (every server's ports). Awaited before
   * any role process starts (when it returns a promise).
   */
  onCluster?: (info: { runId: string; urls: string[]; credentials: Credentials | undefined; plan: ClusterPlan }) => unknown;
  /**
   * A NATS user per process, allowed to publish only as the actors it runs, and a route login between the pods'
   * servers, credentials made for this run (default true). Without, every port of the run's servers admits anyone.
   */
  auth?: boolean;
  onReady?: (reached: number, total: number) => void;
  /** Called for every role process started: its name (pod-0, host-0-1, client) and pid. */
  onSpawn?: (name: string, pid: number) => void;
  onStep?: (step: StepLine) => void;
  /** A step committed again in a replay after a checkpoint restore (not a new commit: `onStep` does not see it). */
  onReplayed?: (step: StepLine) => void;
  /** Called when a crashed process is restarted. */
  onRestart?: (r: Restart) => void;
  /** Continue the run in `runDir` (same run id): its run log and checkpoints are there; the client restores and replays first. */
  resume?: boolean;
  /** Route the pods' nats-servers through DCN fault proxies (one per pair of pods), handed to `onDcn`. */
  dcnProxy?: boolean;
  onDcn?: (links: { from: number; to: number; proxy: DcnProxy }[]) => void;
  /** Extra environment for the first start of named processes (fault injection: LOCKSTEP_CRASH_POINT). */
  processEnv?: Record<string, Record<string, string>>;
  /** Called once every process of the run is started: how to kill, stop or continue one of them (chaos, the status page). */
  onFaults?: (faults: ProcessFaults) => void;
  /** Record every machine's events in `<runDir>/record` for `lockstep replay` (train --record). */
  record?: boolean;
  /** A fresh run in a directory that holds another run: delete that run and start over (train --overwrite); without, refused. */
  overwrite?: boolean;
  /** Lines for the terminal: what the launcher found that the user must know (a lost run log, a finished run). */
  onNote?: (line: string) => void;
  /**
   * Awaited once a run that ended with the client's summary has gone quiet: every role process has exited, the
   * nats-servers still run (tests read their monitoring endpoints then: what crossed the DCN, who connected where).
   */
  onQuiet?: () => Promise<void>;
}

/** What `lockstep train --json` prints. */
export interface TrainResult {
  runId: string;
  topology: string;
  pods: { id: string; paramsHash: string }[];
  steps: number;
  paramsHash: string | null;
  loss: { first: number | null; last: number | null };
  stepsPerSecond: number;
  podsIdenticalEveryStep: boolean;
  rejected: Record<string, number>;
  rejectedTotal: number;
  duplicates: number;
  /** Faults the seeded fault layer injected (topology `faults`). */
  faultsInjected: number;
  /** Why the run ended early (null: it did not): the kind, the typed failure and its sentence. */
  failure: SummaryLine['failure'];
  /** Step attempts that failed and were retried (aborted everywhere, run again as attempt a+1). */
  retried: SummaryLine['retried'];
  /** Mean over steps of the slowest host's time in each phase, and of the whole step (its first dispatch to its commit). */
  phaseMs: PhaseTimes & { step: number };
  /** Steps the client kept in flight at most (`dispatch.depth`). */
  dispatchDepth: number;
  /** How the pods ran their in-pod collectives (`collectives.inPod`). */
  inPod: 'direct' | 'chain';
  /**
   * The mean number of steps in flight (dispatched, not yet committed) over the run: the steps' times from first
   * dispatch to commit, summed, over the time training took (Little's law).
   */
  meanStepsInFlight: number;
  /**
   * How long the hosts waited for the controller: the time from a step being prepared to the next step's dispatch
   * reaching a host that had nothing else to compute (mean over hosts), per step on average and in all.
   */
  hostsWaitedMs: { perStep: number; total: number };
  processes: number;
  /** Processes the launcher restarted after they crashed, and how they had exited. */
  restarts: { process: string; exit: string }[];
  /** Rollbacks to a checkpoint (every replica of a shard lost), the steps replayed after them, and whether each replay reproduced its committed hash. */
  restores: SummaryLine['restores'];
  replayedSteps: number;
  /** Every replayed step's hash equals the one the run log holds for it (whichever launcher committed it). */
  replayedHashesMatch: boolean;
  /**
   * With `train --resume`: steps the run log held when this launcher started, whether the log was lost (its
   * store gone: the run was trained again from step 0), and whether the run was already finished (nothing done).
   */
  resumed: { committedBefore: number; runLogLost: boolean; finished: boolean } | null;
  /** Checkpoints the client wrote in this launcher's run, and each it could not write (step, why). */
  checkpoints: { written: number; failed: { step: number; reason: string }[] };
  /**
   * With `compute: modeled`: the modeled system's figures from this run's phase times converted back to modeled time,
   * and the control plane's real cost a step (`modeledRun` in topology/src/modeled.ts); null otherwise.
   */
  modeled: ModeledRun | null;
  runDir: string;
}

/** What a run directory's run.json holds: enough for `train --resume`. */
export const RunInfo = z.object({ runId: RunId, steps: z.number().int().min(1) }).strict();
export type RunInfo = z.infer<typeof RunInfo>;

export function newRunId(): string {
  return `r-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** How hosts are grouped into processes, and what a host process is called: the cluster plan's (re-exported for the CLI and chaos). */
export { hostGroups, hostProcessName } from '@lockstep/infra';

/** Largest number of processes `train` starts on one machine. */
export const MAX_PROCESSES = 64;

/**
 * Memory a run is expected to take on this machine, in bytes: about 90 MiB a process (Node, its modules, its NATS
 * connection) and, for each host actor, its context and its parameter vectors (committed, prepared, in flight:
 * about 16 copies of the parameters, 4 bytes each) and about 256 KiB of machine, edge and tensor bookkeeping
 * (measured at 2 x 768 hosts of the small model; see the README's "PaLM 540B, modeled").
 */
export function expectedMemoryBytes(t: Topology): number {
  const processes = hostGroups(t).length + t.pods + 1;
  const perHost = 16 * 4 * parameterCount(t.model) + 256 * 1024;
  return processes * 90 * 1024 * 1024 + t.pods * t.hostsPerPod * perHost;
}

/**
 * Throws UsageError when `t` is too big for one machine: more than MAX_PROCESSES processes (name the field to change:
 * `hostsPerProcess`), or more memory than 80% of this machine's (`hostsPerPod`, `model`). `train` checks it before it
 * says it starts anything.
 */
export function assertLocalShape(t: Topology, totalMemory = totalmem()): void {
  const processes = hostGroups(t).length + t.pods + 1;
  if (processes > MAX_PROCESSES) {
    throw new UsageError(
      `hostsPerProcess: topology ${t.name} needs ${processes} processes (${t.pods} pods x ${t.hostsPerPod} hosts, ${t.hostsPerProcess} hosts a process); train starts at most ${MAX_PROCESSES} on one machine. Raise hostsPerProcess (--hosts-per-process) to at least ${Math.ceil(t.hostsPerPod / Math.max(1, Math.floor((MAX_PROCESSES - t.pods - 1) / t.pods)))}.`,
    );
  }
  const need = expectedMemoryBytes(t);
  if (need > 0.8 * totalMemory) {
    const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
    throw new UsageError(
      `hostsPerPod: topology ${t.name} (${t.pods} pods x ${t.hostsPerPod} hosts, ${parameterCount(t.model)} parameters) needs about ${gib(need)} GiB; this machine has ${gib(totalMemory)} GiB (80% may be used). Use fewer hosts or a smaller model.`,
    );
  }
}

/** The signals that end a launcher: Ctrl-C, kill, a closed terminal. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Train a topology with real processes: its cluster plan (`clusterPlan`)
 * rendered on this machine, one nats-server per pod (clustered), the run log's
 * nats-server, one pod-scheduler process per pod, host processes, and the
 * client. The launcher owns the run directory while it runs (`claimRun`: a
 * second launcher on it is refused with a UsageError naming this one), and
 * nothing it starts outlives it: it stops everything itself, and a reaper
 * process ends whatever is left if the launcher dies without doing so.
 *
 * With `resume`, the run log is read first: a log that is not whole is refused
 * (UsageError, with the reason); `steps` below what it holds is refused; a run
 * that holds `steps` steps is finished and returns at once without training.
 */
export async function launch(opts: LaunchOptions): Promise<TrainResult> {
  const t = opts.topology;
  const processes = hostGroups(t).length + t.pods + 1;
  assertLocalShape(t);
  const natsBin = findNatsServer(opts.natsServer);
  const runId = opts.runId ?? newRunId();
  const runsDir = resolve(opts.runsDir ?? DEFAULT_RUNS_DIR);
  const runDir = resolve(opts.runDir ?? join(runsDir, runId));
  const logDir = join(runDir, 'logs');
  if (!opts.resume) refuseForeignDir(runDir);
  // only the run's owner may look inside: its configs and credentials.json hold the run's passwords
  privateDir(runDir);
  const claim = claimRun(runDir);
  // before this run's record starts writing into the directory: another run's files are refused, or cleared with --overwrite
  if (!opts.resume && holdsRun(runDir)) {
    if (!opts.overwrite) {
      claim.release();
      throw new UsageError(
        `run directory ${runDir} holds another run (${join(runDir, 'run.json')}); continue it with train --resume ${runDir}, or delete it and start over with --overwrite`,
      );
    }
    clearRunDir(runDir);
  }
  const reaper = Reaper.start();
  const log = opts.log.child({ run: runId });
  const level = opts.logLevel ?? 'info';
  pointLatestAt(runsDir, runDir);
  const record = new RunRecorder(runDir, {
    hosts: Array.from({ length: t.pods * t.hostsPerPod }, (_, i) => `host/${Math.floor(i / t.hostsPerPod)}/${i % t.hostsPerPod}`),
    log,
  });
  const runEvent = { kind: 'run' as const, actor: 'launcher', runId, topology: t.name, steps: opts.steps, pid: process.pid };
  record.record({ ...runEvent, at: nowMicros(), state: 'started' });
  opts.onRecord?.(record);
  let outcome: unknown;

  let nats: NatsNode[] = [];
  const supervised: Supervised[] = [];
  const dcn: { from: number; to: number; proxy: DcnProxy }[] = [];
  const restarts: Restart[] = [];
  let logReader: NatsConnection | undefined;
  const children = () => [...supervised.map((r) => r.process), ...nats.map((n) => n.process)];
  const cleanup = async () => {
    await logReader?.close().catch(() => {});
    await stopAll(supervised.filter((x) => !x.name.startsWith('nats-')));
    await stopAll(supervised.filter((x) => x.name.startsWith('nats-')));
    await stopAll(nats.map((n) => ({ process: n.process }))); // started but not yet supervised
    await Promise.all(dcn.map((d) => d.proxy.stop()));
  };
  // Killing the launcher's children at once: a second signal during clean-up, or the exit hook of a launcher
  // that dies without cleaning up (an uncaught error). Whatever even this misses, the reaper ends.
  const killAll = () => {
    for (const c of children()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    const code = 128 + (osConstants.signals[sig] ?? 2);
    if (++signals > 1) {
      killAll();
      process.exit(code);
    }
    log.warn({ sig }, 'stopping every process of the run');
    // Ctrl-C reaches the whole process group: what exits now is not a crash to restart
    for (const s of supervised) s.stopping = true;
    void cleanup().finally(() => {
      const message = `stopped by ${sig}`;
      record.record({ ...runEvent, at: nowMicros(), state: 'failed', message });
      record.close(errorJson(Object.assign(new Error(message), { name: 'Interrupted' })));
      process.exit(code);
    });
  };
  for (const sig of STOP_SIGNALS) process.on(sig, onSignal);
  process.once('exit', killAll);
  const spawned = (c: ChildProcess) => reaper.track(c);

  try {
    const prior = opts.resume ? priorTarget(runDir, runId) : undefined;
    mkdirSync(logDir, { recursive: true });
    const topoFile = join(runDir, 'topology.json');
    writeFileSync(topoFile, JSON.stringify(t, null, 2));
    // who may say what: a user per process (its identity) and the route login, passwords made for this run, kept in the run directory (mode 0600)
    const credentials = opts.auth === false ? undefined : newCredentials(clusterIdentities(t));
    if (credentials) writePrivate(join(runDir, 'credentials.json'), `${JSON.stringify(credentials, null, 2)}\n`);
    const ports = await localPorts(t.pods);
    if (opts.dcnProxy) dcn.push(...(await startDcnProxies(ports)));
    const plan = clusterPlan(t, {
      runId,
      steps: opts.steps,
      topologyArg: topoFile,
      credentials,
      logLevel: level,
      place: {
        kind: 'local',
        dir: runDir,
        ports,
        dcn: opts.dcnProxy ? dcn.map((d) => ({ from: d.from, to: d.to, port: d.proxy.port })) : undefined,
      },
    });
    const local = localRendering(plan, runDir);
    const serverOpts = { bin: natsBin, log, holdFd: claim.fd, onSpawn: spawned };
    // the run log's server first: the launcher reads the log (as the client) before anything else starts
    const runLogServer = local.servers.find((x) => x.pod < 0)!;
    nats.push(...(await startNatsServers([runLogServer], serverOpts)));
    logReader = await connectNats({
      servers: runLogServer.url,
      name: 'launcher/runlog',
      log,
      user: credentials?.users.client.user,
      pass: credentials?.users.client.password,
    });
    let resumed: TrainResult['resumed'] = null;
    if (prior) {
      const found = await readRunLog(logReader, runId, log, t.deadlines.phaseMs);
      const committed = found.last ? found.last.step + 1 : 0;
      if (opts.steps < committed)
        throw new UsageError(
          `--steps: ${opts.steps} is below the ${committed} steps run ${runId} has committed; a run cannot go back (give --steps ${committed} or more)`,
        );
      resumed = { committedBefore: committed, runLogLost: found.lost, finished: committed === opts.steps };
      if (found.lost)
        opts.onNote?.(
          `lockstep: the run log of ${runId} is gone (no stream in ${join(runDir, 'jetstream')}): nothing says which steps were committed, so the run is trained again from step 0`,
        );
      if (found.last && committed === opts.steps) {
        opts.onNote?.(`lockstep: run ${runId} is finished: all ${committed} steps are committed; nothing to do`);
        return finishedResult(t, runId, runDir, found.last, processes, resumed);
      }
    }
    // the target changes only when asked for more steps (a fresh run, or --resume with a larger --steps)
    if (!prior || opts.steps > prior.steps)
      writeFileSync(join(runDir, 'run.json'), `${JSON.stringify({ runId, steps: opts.steps } satisfies RunInfo)}\n`);
    nats.push(
      ...(await startNatsServers(
        local.servers.filter((x) => x.pod >= 0),
        serverOpts,
      )),
    );
    nats.sort((a, b) => (a.pod < 0 ? 1 : b.pod < 0 ? -1 : a.pod - b.pod));
    if (opts.dcnProxy) opts.onDcn?.(dcn);
    const urls = nats.filter((n) => n.pod >= 0).map((n) => n.url);
    log.info({ servers: nats.map((n) => n.url), runDir }, 'nats cluster up');
    await opts.onCluster?.({ runId, urls, credentials, plan });

    let giveUp: (err: Error) => void = () => {};
    const died = new Promise<never>((_, reject) => (giveUp = reject));
    let summary: SummaryLine | undefined;
    const steps: StepLine[] = [];
    const replayed: StepLine[] = [];
    const checkpoints: TrainResult['checkpoints'] = { written: 0, failed: [] };
    const onRestart = (r: Restart) => {
      restarts.push(r);
      opts.onRestart?.(r);
    };
    const supervise = (
      name: string,
      start: (restart: number) => ChildProcess,
      logFile: string,
      expected: (code: number | null) => boolean,
      maxRestarts = t.recovery.maxRestarts,
    ) => {
      const s = new Supervised({
        name,
        maxRestarts,
        start: (r) => {
          const c = start(r);
          spawned(c);
          return c;
        },
        expected,
        log,
        logFile,
        onStart: (pid, restart) => {
          record.record({ kind: 'start', actor: name, at: nowMicros(), pid, restart }, name);
          opts.onSpawn?.(name, pid);
        },
        onExit: (e) => record.record({ kind: 'exit', actor: name, at: nowMicros(), ...e }, name),
        onRestart,
        onGiveUp: (err) => giveUp(err),
      });
      supervised.push(s);
      return s;
    };
    // a crashed nats-server comes back on the same ports; clients reconnect and the protocol resends what was lost
    for (const n of nats)
      supervise(
        n.name,
        (r) => (r === 0 ? n.process : spawnNats(natsBin, n.config.file, n.logFile, claim.fd)),
        n.logFile,
        () => summary !== undefined,
      );
    nats = [];
    const takeFrom = (name: string) => (line: string) => record.take(line, name);
    const recordEnv: Record<string, string> = opts.record ? { LOCKSTEP_RECORD_DIR: join(runDir, 'record') } : {};
    // a restarted role process rejoins: a pod scheduler learns the step from the client, a host heals from its cross-pod peer
    for (const p of local.roles.filter((x) => x.role !== 'client'))
      supervise(
        p.name,
        (r) =>
          (r === 0
            ? spawnRole(p.name, p.args, logDir, 'log', { ...p.env, ...recordEnv, ...opts.processEnv?.[p.name] }, claim.fd, takeFrom(p.name))
            : spawnRole(p.name, [...p.args, '--rejoin'], logDir, 'log', { ...p.env, ...recordEnv }, claim.fd, takeFrom(p.name))
          ).process,
        p.logFile,
        (code) => code === 0,
      );

    const onLine = (line: string) => {
      let parsed: ReturnType<typeof ClientLine.safeParse>;
      try {
        parsed = ClientLine.safeParse(JSON.parse(line));
      } catch {
        return log.warn({ line: line.slice(0, 200) }, 'client printed a line that is not JSON');
      }
      if (!parsed.success) return log.warn({ line: line.slice(0, 200) }, 'client printed a line of the wrong shape');
      const l = parsed.data;
      if (l.type === 'ready') opts.onReady?.(l.reached, l.total);
      else if (l.type === 'checkpoint') {
        if (l.written) return void checkpoints.written++;
        checkpoints.failed.push({ step: l.step, reason: l.reason ?? 'unknown' });
        const what = `the checkpoint of step ${l.step} could not be written: ${l.reason ?? 'unknown'}`;
        if (t.checkpoint.onWriteError === 'fail')
          return giveUp(
            new RunFailed(
              `${what}; the run stops rather than go on without checkpoints (topology checkpoint.onWriteError: continue goes on)`,
            ),
          );
        opts.onNote?.(`lockstep: ${what}; going on without it (checkpoint.onWriteError: continue)`);
      } else if (l.type === 'step.committed') {
        // a restarted client reports the commit it finished; its predecessor may have reported it already
        if (l.recovered && steps.some((x) => x.step === l.step)) return;
        // a step run again after a checkpoint restore: counted apart, not as a second commit
        record.step(l);
        if (l.replayed) {
          replayed.push(l);
          opts.onReplayed?.(l);
          return;
        }
        steps.push(l);
        opts.onStep?.(l);
      } else summary = l;
    };
    let clientCode: (code: number) => void = () => {};
    const clientExit = new Promise<number>((res) => (clientCode = res));
    const client = local.roles.find((x) => x.role === 'client')!;
    supervise(
      client.name,
      // a restarted client resumes from the run log: it finishes the last logged commit and goes on
      (r) => {
        const resume = r > 0 ? ['--resume'] : opts.resume ? ['--resume', '--cold'] : [];
        const m = spawnRole(
          client.name,
          [...client.args, ...resume],
          logDir,
          'pipe',
          { ...client.env, ...recordEnv },
          claim.fd,
          takeFrom(client.name),
        );
        createInterface({ input: m.process.stdout! }).on('line', onLine);
        m.process.once('close', (code) => {
          if (summary) clientCode(code ?? 1);
        });
        return m.process;
      },
      client.logFile,
      () => summary !== undefined,
    );
    opts.onFaults?.(new ProcessFaults(t, supervised, record));

    const code = await Promise.race([clientExit, died]);
    if (!summary)
      throw new RunFailed(`the client exited (code ${code}) without a summary; its log: ${client.logFile}\n${tail(client.logFile)}`);
    const s: SummaryLine = summary;
    const hashesMatch = await replayedMatchLog(logReader, runId, log, t.deadlines.phaseMs, replayed);
    if (opts.onQuiet) {
      await stopAll(supervised.filter((x) => !x.name.startsWith('nats-')));
      await opts.onQuiet();
    }
    const result = toResult(t, runId, runDir, s, steps, processes, restarts, replayed, hashesMatch, resumed, checkpoints);
    if (s.failure) throw new RunFailed(`${s.failure.kind}: ${s.failure.message} (logs in ${logDir})`, result, s.failure);
    if (s.logged !== opts.steps) throw new RunFailed(`only ${s.logged} of ${opts.steps} steps committed (logs in ${logDir})`, result);
    outcome = result;
    return result;
  } catch (err) {
    outcome = errorJson(err as Error);
    throw err;
  } finally {
    for (const sig of STOP_SIGNALS) process.off(sig, onSignal);
    await cleanup();
    process.off('exit', killAll);
    const failed = outcome !== undefined && typeof outcome === 'object' && outcome !== null && 'error' in outcome;
    const message = failed ? (outcome as { error: { message: string } }).error.message.slice(0, 2000) : undefined;
    record.record({ ...runEvent, at: nowMicros(), state: failed ? 'failed' : 'finished', ...(message ? { message } : {}) });
    record.close(outcome);
    reaper.close();
    claim.release();
  }
}

/** The target a resumed run has recorded (run.json), checked against the run id it is resumed as. */
function priorTarget(runDir: string, runId: string): RunInfo {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'));
  } catch (err) {
    throw new UsageError(
      `--resume: ${runDir} is not a run (no readable run.json: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  const r = RunInfo.safeParse(value);
  if (!r.success) throw new UsageError(`--resume: ${join(runDir, 'run.json')}: ${describeIssues(r.error).join('; ')}`);
  if (r.data.runId !== runId) throw new UsageError(`--resume: ${join(runDir, 'run.json')} is run ${r.data.runId}, not ${runId}`);
  return r.data;
}

/** A resumed run's log: its last record, or lost (no stream at all); a log that is not whole is refused with the reason. */
async function readRunLog(
  nc: NatsConnection,
  runId: string,
  log: Logger,
  timeoutMs: number,
): Promise<{ last: RunLogRecord | undefined; lost: boolean }> {
  const runLog = await RunLog.existing(nc, runId, log, timeoutMs);
  if (!runLog) return { last: undefined, lost: true };
  try {
    return { last: await runLog.verified(), lost: false };
  } catch (err) {
    if (err instanceof RunLogConflict)
      throw new UsageError(`--resume: run ${runId} cannot be resumed: ${err.message}; start it over (train --run-dir <dir> --overwrite)`);
    throw err;
  }
}

/** Whether every replayed step reproduced the hash the run log holds for it (read from the log, not from what this launcher saw). */
async function replayedMatchLog(nc: NatsConnection, runId: string, log: Logger, timeoutMs: number, replayed: StepLine[]): Promise<boolean> {
  if (replayed.length === 0) return true;
  const runLog = await RunLog.existing(nc, runId, log, timeoutMs);
  if (!runLog) return false;
  for (const r of replayed) if ((await runLog.get(r.step))?.paramsHash !== r.paramsHash) return false;
  return true;
}

/** What `train --resume` of a finished run returns: the run as its log holds it; nothing was trained. */
function finishedResult(
  t: Topology,
  runId: string,
  runDir: string,
  last: RunLogRecord,
  processes: number,
  resumed: NonNullable<TrainResult['resumed']>,
): TrainResult {
  return {
    runId,
    topology: t.name,
    pods: [],
    steps: last.step + 1,
    paramsHash: last.paramsHash,
    loss: { first: null, last: last.loss },
    stepsPerSecond: 0,
    podsIdenticalEveryStep: true,
    rejected: {},
    rejectedTotal: 0,
    duplicates: 0,
    faultsInjected: 0,
    failure: null,
    retried: [],
    phaseMs: { step: 0 } as PhaseTimes & { step: number },
    processes,
    restarts: [],
    restores: [],
    replayedSteps: 0,
    replayedHashesMatch: true,
    resumed,
    dispatchDepth: t.dispatch.depth,
    inPod: t.collectives.inPod,
    meanStepsInFlight: 0,
    hostsWaitedMs: { perStep: 0, total: 0 },
    checkpoints: { written: 0, failed: [] },
    modeled: null,
    runDir,
  };
}

function toResult(
  t: Topology,
  runId: string,
  runDir: string,
  s: SummaryLine,
  steps: StepLine[],
  processes: number,
  restarts: Restart[],
  replayed: StepLine[],
  replayedHashesMatch: boolean,
  resumed: TrainResult['resumed'],
  checkpoints: TrainResult['checkpoints'],
): TrainResult {
  const phaseMs = { step: mean(steps.map((x) => x.ms)) } as PhaseTimes & { step: number };
  for (const p of hostPhases) phaseMs[p] = mean(steps.map((x) => x.phaseMs[p] ?? 0));
  const firstRun = steps.filter((x) => !x.replayed && !x.recovered);
  const waited = firstRun.reduce((n, x) => n + x.waitedMs, 0);
  return {
    runId,
    topology: t.name,
    pods: s.pods,
    steps: s.logged,
    paramsHash: s.paramsHash,
    loss: s.loss,
    stepsPerSecond: s.trainMs > 0 ? s.stepsCommitted / (s.trainMs / 1000) : 0,
    podsIdenticalEveryStep: s.podsIdenticalEveryStep,
    rejected: s.rejected,
    rejectedTotal: totalRejections(s.rejected),
    duplicates: s.duplicates,
    faultsInjected: s.faultsInjected,
    failure: s.failure,
    retried: s.retried,
    phaseMs,
    dispatchDepth: t.dispatch.depth,
    inPod: t.collectives.inPod,
    meanStepsInFlight: s.trainMs > 0 ? firstRun.reduce((n, x) => n + x.ms, 0) / s.trainMs : 0,
    hostsWaitedMs: { perStep: mean(firstRun.map((x) => x.waitedMs)), total: waited },
    processes,
    restarts: restarts.map((r) => ({ process: r.process, exit: r.exit })),
    restores: s.restores,
    replayedSteps: replayed.length,
    replayedHashesMatch,
    resumed,
    checkpoints,
    modeled:
      s.stepsCommitted > 0 && s.trainMs > 0 ? (modeledRun(t, { phaseMs, wallMsPerStep: s.trainMs / s.stepsCommitted }) ?? null) : null,
    runDir,
  };
}

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** The last lines of a log, for an error message. */
export function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .slice(-lines)
      .map((l) => `    ${l.slice(0, 400)}`)
      .join('\n');
  } catch {
    return '';
  }
}
