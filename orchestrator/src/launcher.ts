import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { hostPhases, type PhaseTimes, type Topology } from '@lockstep/topology';
import { totalRejections, type LogLevel } from '@lockstep/actors';
import { ProcessExited, RunFailed } from './errors.ts';
import { findNatsServer, startNatsCluster, type NatsNode } from './nats.ts';
import { spawnRole, stopAll, type Managed } from './processes.ts';
import { ClientLine, type StepLine, type SummaryLine } from './protocol.ts';

export interface LaunchOptions {
  topology: Topology;
  steps: number;
  runId?: string;
  /** Where configs and logs go; default .lockstep/runs/<runId>. */
  runDir?: string;
  logLevel?: LogLevel;
  natsServer?: string;
  log: Logger;
  /** Called once the NATS servers are up: the run id and each pod's server URL (tests use it to inject traffic). */
  onCluster?: (info: { runId: string; urls: string[] }) => void;
  onReady?: (reached: number, total: number) => void;
  /** Called for every role process started: its name (pod-0, host-0-1, client) and pid. */
  onSpawn?: (name: string, pid: number) => void;
  onStep?: (step: StepLine) => void;
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
  /** Step attempts that failed and were retried (aborted everywhere, run again as attempt a+1). */
  retried: SummaryLine['retried'];
  /** Mean over steps of the slowest host's time in each phase, and of the whole step. */
  phaseMs: PhaseTimes & { step: number };
  processes: number;
  runDir: string;
}

export function newRunId(): string {
  return `r-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Host processes: hosts of one pod grouped `hostsPerProcess` to a process. */
export function hostGroups(t: Topology): { pod: number; hosts: number[] }[] {
  const groups: { pod: number; hosts: number[] }[] = [];
  for (let pod = 0; pod < t.pods; pod++) {
    for (let h = 0; h < t.hostsPerPod; h += t.hostsPerProcess) {
      groups.push({ pod, hosts: Array.from({ length: Math.min(t.hostsPerProcess, t.hostsPerPod - h) }, (_, i) => h + i) });
    }
  }
  return groups;
}

/** Largest cluster `train` starts on one machine: processes, and host actors (in-pod traffic grows as hosts squared). */
export const MAX_PROCESSES = 64;
export const MAX_HOSTS = 64;

/**
 * Train a topology with real processes: one nats-server per pod (clustered),
 * one pod-scheduler process per pod, host processes, and the client. Stops
 * everything it started, whatever happens.
 */
export async function launch(opts: LaunchOptions): Promise<TrainResult> {
  const t = opts.topology;
  const groups = hostGroups(t);
  const processes = groups.length + t.pods + 1;
  if (t.pods * t.hostsPerPod > MAX_HOSTS) {
    throw new RunFailed(
      `topology ${t.name} has ${t.pods * t.hostsPerPod} hosts (${t.pods} pods x ${t.hostsPerPod}); train runs at most ${MAX_HOSTS} on one machine. It is a layout for modeled runs; train a smaller topology.`,
    );
  }
  if (processes > MAX_PROCESSES) {
    throw new RunFailed(
      `topology ${t.name} needs ${processes} processes (${t.pods} pods x ${t.hostsPerPod} hosts, ${t.hostsPerProcess} hosts a process); train starts at most ${MAX_PROCESSES} on one machine. Raise hostsPerProcess or use a smaller topology.`,
    );
  }
  const natsBin = findNatsServer(opts.natsServer);
  const runId = opts.runId ?? newRunId();
  const runDir = resolve(opts.runDir ?? join('.lockstep', 'runs', runId));
  const logDir = join(runDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const topoFile = join(runDir, 'topology.json');
  writeFileSync(topoFile, JSON.stringify(t, null, 2));
  const log = opts.log.child({ run: runId });
  const level = opts.logLevel ?? 'info';

  let nats: NatsNode[] = [];
  const roles: Managed[] = [];
  const cleanup = async () => {
    await stopAll(roles);
    await stopAll(nats.map((n) => ({ process: n.process })));
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log.warn({ sig }, 'stopping every process of the run');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Last resort when the launcher dies without cleaning up (an uncaught error, a closed terminal):
  // role processes notice their stdin closing, nats-servers do not, so kill them on the way out.
  const onExit = () => {
    for (const c of [...roles.map((r) => r.process), ...nats.map((n) => n.process)]) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', onExit);

  try {
    nats = await startNatsCluster({ pods: t.pods, dir: runDir, bin: natsBin, log });
    log.info({ servers: nats.map((n) => n.url), runDir }, 'nats cluster up');
    opts.onCluster?.({ runId, urls: nats.map((n) => n.url) });
    const common = (pod: number) => ['--run', runId, '--nats', nats[pod].url, '--topology', topoFile, '--log-level', level];
    for (let pod = 0; pod < t.pods; pod++) roles.push(spawnRole(`pod-${pod}`, ['pod', '--pod', String(pod), ...common(pod)], logDir));
    for (const g of groups) roles.push(spawnRole(`host-${g.pod}-${g.hosts.length === 1 ? g.hosts[0] : `${g.hosts[0]}..${g.hosts.at(-1)}`}`, ['host', '--pod', String(g.pod), '--hosts', g.hosts.join(','), ...common(g.pod)], logDir));
    const client = spawnRole('client', ['client', '--steps', String(opts.steps), ...common(0)], logDir, 'pipe');
    roles.push(client);
    for (const r of roles) if (r.process.pid) opts.onSpawn?.(r.name, r.process.pid);

    const steps: StepLine[] = [];
    let summary: SummaryLine | undefined;
    const lines = createInterface({ input: client.process.stdout! });
    lines.on('line', (line) => {
      let parsed: ReturnType<typeof ClientLine.safeParse>;
      try {
        parsed = ClientLine.safeParse(JSON.parse(line));
      } catch {
        return log.warn({ line: line.slice(0, 200) }, 'client printed a line that is not JSON');
      }
      if (!parsed.success) return log.warn({ line: line.slice(0, 200) }, 'client printed a line of the wrong shape');
      const l = parsed.data;
      if (l.type === 'ready') opts.onReady?.(l.reached, l.total);
      else if (l.type === 'step.committed') {
        steps.push(l);
        opts.onStep?.(l);
      } else summary = l;
    });

    // Fail fast when any process dies before the client ends.
    const died = new Promise<never>((_, reject) => {
      for (const r of roles) {
        r.process.once('exit', (code, signal) => {
          // A role process exits 0 once the run has ended; anything else is a failure.
          if (r === client || r.stopping || code === 0) return;
          reject(new ProcessExited(`${r.name} exited (${signal ?? `code ${code}`}) during the run; its log: ${r.log}\n${tail(r.log)}`));
        });
      }
      for (const n of nats) {
        n.process.once('exit', (code, signal) => {
          if (!summary) reject(new ProcessExited(`nats-server of pod ${n.pod} exited (${signal ?? `code ${code}`}); its log: ${join(logDir, `nats-pod-${n.pod}.log`)}`));
        });
      }
    });
    const linesClosed = new Promise<void>((res) => lines.once('close', () => res()));
    const exited = new Promise<number>((res) => client.process.once('exit', (code) => res(code ?? 1)));
    const clientExit = Promise.all([exited, linesClosed]).then(([c]) => c);
    const code = await Promise.race([clientExit, died]);
    if (!summary) throw new RunFailed(`the client exited (code ${code}) without a summary; its log: ${client.log}\n${tail(client.log)}`);
    const s: SummaryLine = summary;
    const result = toResult(t, runId, runDir, s, steps, processes);
    if (s.failure) throw new RunFailed(`${s.failure.kind}: ${s.failure.message} (logs in ${logDir})`, result);
    if (s.stepsCommitted !== opts.steps) throw new RunFailed(`only ${s.stepsCommitted} of ${opts.steps} steps committed (logs in ${logDir})`, result);
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
    process.off('exit', onExit);
  }
}

function toResult(t: Topology, runId: string, runDir: string, s: SummaryLine, steps: StepLine[], processes: number): TrainResult {
  const phaseMs = { step: mean(steps.map((x) => x.ms)) } as PhaseTimes & { step: number };
  for (const p of hostPhases) phaseMs[p] = mean(steps.map((x) => x.phaseMs[p] ?? 0));
  return {
    runId,
    topology: t.name,
    pods: s.pods,
    steps: s.stepsCommitted,
    paramsHash: s.paramsHash,
    loss: s.loss,
    stepsPerSecond: s.trainMs > 0 ? s.stepsCommitted / (s.trainMs / 1000) : 0,
    podsIdenticalEveryStep: s.podsIdenticalEveryStep,
    rejected: s.rejected,
    rejectedTotal: totalRejections(s.rejected),
    duplicates: s.duplicates,
    faultsInjected: s.faultsInjected,
    retried: s.retried,
    phaseMs,
    processes,
    runDir,
  };
}

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** The last lines of a log, for an error message. */
export function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).map((l) => `    ${l.slice(0, 400)}`).join('\n');
  } catch {
    return '';
  }
}
