import { z } from 'zod';
import {
  ProcessWire,
  connectNats,
  natsTransport,
  pingFor,
  createLogger,
  eventSinkFromEnv,
  logLevels,
  parseCrashPoint,
  RunLog,
  runClient,
  runHost,
  runPod,
  type EventSink,
  type LogLevel,
} from '@lockstep/actors';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { RunId, actorNames, describeIssues, failureReport, processKey, toMicros, type CrashPoint, type Topology } from '@lockstep/topology';
import type { SummaryLine } from './protocol.ts';
import { fmtLoss, table } from './progress.ts';
import { loadTopology } from './load.ts';
import { UsageError } from './errors.ts';

/**
 * The processes a cluster is made of: `lockstep pod`, `lockstep host`,
 * `lockstep client`. The launcher (or a container) starts them; they find
 * each other only through NATS subjects.
 */
const common = {
  run: RunId,
  nats: z.string().min(1, 'must name a NATS server URL'),
  topology: z.string().min(1),
  logLevel: z.enum(logLevels).default('info'),
};
const index = z.coerce.number().int('must be a whole number').min(0, 'must be >= 0');
/** --rejoin: started again after a crash (a pod scheduler learns the step from the client, a host heals from its peer). */
const rejoin = z.boolean().default(false);
const ckptDir = z.string().min(1, 'must name the checkpoint directory');
export const PodFlags = z.object({ ...common, pod: index, rejoin });
export const HostFlags = z.object({
  ...common,
  pod: index,
  rejoin,
  ckptDir,
  hosts: z.string().regex(/^\d+(,\d+)*$/, 'must be a comma-separated list of host indices, e.g. 0,1'),
});
export const ClientFlags = z.object({
  ...common,
  steps: z.coerce.number().int('must be a whole number').min(1, 'must be >= 1'),
  firstStep: index.default(0),
  ckptDir,
  /** The run log's server (JetStream). */
  logNats: z.string().min(1, 'must name the run log NATS server URL'),
  /** Restarted: finish the run log's last commit, then go on from the next step. */
  resume: z.boolean().default(false),
  /** With --resume: every process was started again; restore a checkpoint and replay to the last logged step. */
  cold: z.boolean().default(false),
});

/** LOCKSTEP_RECORD_DIR: record every machine's events here (train --record), for lockstep replay. */
function recordDir(): string | undefined {
  const r = z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .safeParse(process.env.LOCKSTEP_RECORD_DIR || undefined);
  if (!r.success) throw new UsageError('LOCKSTEP_RECORD_DIR: must be a directory path');
  return r.data;
}

/** LOCKSTEP_EVENTS_FD: where the launcher reads this process's run events (absent: nobody does). */
function events(): EventSink | undefined {
  try {
    return eventSinkFromEnv();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function parseFlags<S extends z.ZodType>(schema: S, flags: unknown): z.output<S> {
  const r = schema.safeParse(flags);
  if (!r.success)
    throw new UsageError(
      // one line per bad flag: its first broken rule (1e20 breaks both `<= max` and `whole`)
      describeIssues(r.error)
        .filter((l, i, all) => all.findIndex((o) => o.split(':')[0] === l.split(':')[0]) === i)
        .map((l) => `--${l.replace(/^([a-zA-Z]+)/, (m) => m.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`))}`)
        .join('\n'),
    );
  return r.data;
}

/** With LOCKSTEP_PARENT_WATCH=1, exit when the launcher goes away (its pipe to our stdin closes). */
function watchParent(onGone: () => void) {
  if (process.env.LOCKSTEP_PARENT_WATCH !== '1') return;
  process.stdin.on('end', onGone);
  process.stdin.on('close', onGone);
  process.stdin.resume();
}

/** The process's NATS user (its identity), from the environment the launcher sets (never on the command line, where ps shows it). */
const NatsAuthEnv = z.object({ LOCKSTEP_NATS_USER: z.string().min(1).optional(), LOCKSTEP_NATS_PASS: z.string().min(1).optional() });
/** The NATS login a role process (or `lockstep watch`) connects with: LOCKSTEP_NATS_USER and LOCKSTEP_NATS_PASS, when set. */
export function natsAuth(): { user?: string; pass?: string } {
  const r = NatsAuthEnv.safeParse(process.env);
  if (!r.success) throw new UsageError(`NATS credentials: ${describeIssues(r.error).join('; ')}`);
  return { user: r.data.LOCKSTEP_NATS_USER, pass: r.data.LOCKSTEP_NATS_PASS };
}

/**
 * How many times this process was started before in this container: with LOCKSTEP_RESTART_MARKER set (compose and
 * the testcontainers helper set it), each start appends a line to that file, and a container restarted (by its
 * restart policy, or by hand) finds it and rejoins. Read once; 0 without a marker.
 */
let earlierStarts: number | undefined;
function containerRestarts(): number {
  if (earlierStarts !== undefined) return earlierStarts;
  const marker = process.env.LOCKSTEP_RESTART_MARKER;
  if (!marker) {
    earlierStarts = 0;
    return 0;
  }
  earlierStarts = existsSync(marker)
    ? readFileSync(marker, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0).length
    : 0;
  appendFileSync(marker, `${process.pid}\n`);
  return earlierStarts;
}
function restartedContainer(): boolean {
  return containerRestarts() > 0;
}

/**
 * In a container there is no launcher to see a process start and exit: with LOCKSTEP_STREAM_FILE (and no events
 * pipe), the process records both itself in its stream (named after the file: `host-0-1.jsonl` is host-0-1), and
 * the client copies its stdout lines there too, for the recorder (`lockstep watch --streams`).
 */
function streamed(sink: EventSink | undefined): { line(o: object): void; exited(code: number): void } {
  const file = process.env.LOCKSTEP_EVENTS_FD ? undefined : process.env.LOCKSTEP_STREAM_FILE;
  if (!sink || !file) return { line: () => {}, exited: () => {} };
  const actor = basename(file, '.jsonl');
  const at = () => toMicros(performance.timeOrigin + performance.now());
  sink.emit({ kind: 'start', actor, at: at(), pid: process.pid, restart: containerRestarts() });
  return {
    line: (o) => sink.line(o),
    exited: (code) =>
      sink.emit({ kind: 'exit', actor, at: at(), exit: `code ${code}`, restart: null, expected: code === 0, pid: process.pid }),
  };
}

function onSignals(stop: () => void) {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, stop);
}

const ExitDelayEnv = z.object({ LOCKSTEP_EXIT_DELAY_MS: z.coerce.number().int('must be a whole number').min(0).max(600_000).optional() });
/**
 * With LOCKSTEP_EXIT_DELAY_MS (compose sets it for pods and hosts), a role
 * that finished stays up that long before exiting 0, or until it is stopped:
 * `docker compose up --exit-code-from client` stops everything when the
 * first container exits, so the client must be the first to go.
 */
function exitDelayMs(): number {
  const r = ExitDelayEnv.safeParse(process.env);
  if (!r.success)
    throw new UsageError(
      `LOCKSTEP_EXIT_DELAY_MS: ${describeIssues(r.error)
        .map((x) => x.replace(/^[^:]+: /, ''))
        .join('; ')}`,
    );
  return r.data.LOCKSTEP_EXIT_DELAY_MS ?? 0;
}
async function linger(ms: number, log: { info(o: object, m: string): void }): Promise<void> {
  if (ms === 0) return;
  log.info({ ms }, 'run over: exiting after the delay');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.removeAllListeners(sig);
      process.once(sig, () => {
        clearTimeout(timer);
        resolve();
      });
    }
  });
}

export async function podRole(raw: unknown): Promise<number> {
  const f = parseFlags(PodFlags, raw);
  const t = loadTopology(f.topology);
  const log = createLogger(f.logLevel as LogLevel, { run: f.run, role: 'pod' });
  const delay = exitDelayMs();
  const nc = await connectNats({ servers: f.nats, name: `pod/${f.pod}`, log, ...natsAuth(), ...pingFor(t) });
  const sink = events();
  const stream = streamed(sink);
  // what the pod tells its host processes goes in batch frames, one per process a turn; theirs come the same way
  const wire = new ProcessWire({ runId: f.run, topology: t, pod: f.pod, self: 'pod', remote: natsTransport(nc, log), log }).start();
  const pod = runPod({
    transport: wire.transport(),
    nc,
    topology: t,
    runId: f.run,
    pod: f.pod,
    log,
    rejoin: f.rejoin || restartedContainer(),
    recordDir: recordDir(),
    events: sink,
  });
  const exit = () => {
    pod.stop();
    void nc.close().finally(() => process.exit(1));
  };
  watchParent(exit);
  onSignals(exit);
  await pod.done;
  wire.stop();
  await nc.drain();
  stream.exited(0);
  await sink?.close();
  await linger(delay, log);
  return 0;
}

export async function hostRole(raw: unknown): Promise<number> {
  const f = parseFlags(HostFlags, raw);
  const t = loadTopology(f.topology);
  const hosts = f.hosts.split(',').map(Number);
  const bad = hosts.find((h) => h >= t.hostsPerPod);
  if (bad !== undefined) throw new UsageError(`--hosts: host ${bad} does not exist (hostsPerPod is ${t.hostsPerPod})`);
  if (f.pod >= t.pods) throw new UsageError(`--pod: pod ${f.pod} does not exist (pods is ${t.pods})`);
  // the other processes of the pod address batch frames by the topology's grouping: a process runs one whole group
  const first = hosts[0] - (hosts[0] % t.hostsPerProcess);
  const group = Array.from({ length: Math.min(t.hostsPerProcess, t.hostsPerPod - first) }, (_, i) => first + i);
  if (hosts.join(',') !== group.join(','))
    throw new UsageError(
      `--hosts: must be one group of hostsPerProcess (${t.hostsPerProcess}) hosts, here ${group.join(',')}; got ${f.hosts}`,
    );
  const log = createLogger(f.logLevel as LogLevel, { run: f.run, role: 'host' });
  const delay = exitDelayMs();
  let crashPoint: CrashPoint | undefined;
  try {
    crashPoint = parseCrashPoint(process.env.LOCKSTEP_CRASH_POINT);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const nc = await connectNats({ servers: f.nats, name: `hosts/${f.pod}/${f.hosts}`, log, ...natsAuth(), ...pingFor(t) });
  const heal = f.rejoin || restartedContainer();
  // hosts of one process hand each other their messages in memory, and the other processes of their pod theirs in
  // batch frames (one wire for the process)
  const key = processKey(hosts.map((h) => actorNames.host(f.pod, h)))!;
  const wire = new ProcessWire({ runId: f.run, topology: t, pod: f.pod, self: key.key, remote: natsTransport(nc, log), log }).start();
  const transport = wire.transport();
  const sink = events();
  const stream = streamed(sink);
  const runs = hosts.map((host) =>
    runHost({
      nc,
      topology: t,
      runId: f.run,
      pod: f.pod,
      host,
      log,
      heal,
      crashPoint,
      checkpointDir: f.ckptDir,
      recordDir: recordDir(),
      transport,
      events: sink,
    }),
  );
  const exit = () => {
    for (const r of runs) r.stop();
    void nc.close().finally(() => process.exit(1));
  };
  watchParent(exit);
  onSignals(exit);
  await Promise.all(runs.map((r) => r.done));
  wire.stop();
  await nc.drain();
  stream.exited(0);
  await sink?.close();
  await linger(delay, log);
  return 0;
}

function summaryTable(t: Topology, s: SummaryLine): string {
  const rows: [string, string][] = [
    ['topology', `${t.name} (${t.pods} pods x ${t.hostsPerPod} hosts)`],
    ['steps', String(s.logged)],
    ['loss first/last', `${fmtLoss(s.loss.first)} -> ${fmtLoss(s.loss.last)}`],
    ...s.pods.map((p): [string, string] => [`${p.id} paramsHash`, p.paramsHash]),
    ['pods identical at every step', s.podsIdenticalEveryStep ? 'yes' : 'NO'],
    ['retried attempts', String(s.retried.length)],
    ['failure', s.failure ? `${s.failure.kind}: ${s.failure.message}` : 'none'],
  ];
  return `lockstep client: ${s.failure ? 'failed' : 'done'}\n${table(rows)}\n`;
}

/** Runs the client; prints one JSON line per event on stdout for the launcher. Exit 0 only if every step committed. */
export async function clientRole(raw: unknown): Promise<number> {
  const f = parseFlags(ClientFlags, raw);
  const t = loadTopology(f.topology);
  const log = createLogger(f.logLevel as LogLevel, { run: f.run, role: 'client' });
  const nc = await connectNats({ servers: f.nats, name: 'client', log, ...natsAuth(), ...pingFor(t) });
  const lnc = await connectNats({ servers: f.logNats, name: 'client/runlog', log, ...natsAuth() });
  const runLog = await RunLog.open(lnc, f.run, log, t.deadlines.phaseMs);
  const last = await runLog.last();
  if (restartedContainer()) f.resume = true;
  if (last && !f.resume)
    throw new UsageError(`run ${f.run} already has ${last.step + 1} committed steps in its run log; resume it (--resume) instead`);
  if (f.resume) log.warn({ lastLogged: last ?? null }, 'client restarted: resuming from the run log');
  const sink = events();
  const stream = streamed(sink);
  const print = (o: object) => {
    process.stdout.write(`${JSON.stringify(o)}\n`);
    stream.line(o);
  };
  onSignals(() => void nc.close().finally(() => process.exit(1)));
  watchParent(() => void nc.close().finally(() => process.exit(1)));
  let identical = true;
  let started = 0;
  const out = await runClient({
    nc,
    topology: t,
    runId: f.run,
    steps: f.steps,
    firstStep: f.firstStep,
    runLog,
    checkpointDir: f.ckptDir,
    resume: f.resume ? last : undefined,
    cold: f.cold,
    log,
    recordDir: recordDir(),
    events: sink,
    onReadyProgress: (reached, total) => {
      print({ type: 'ready', reached, total });
      started = performance.now();
    },
    onStep: (r) => {
      identical &&= r.podsAgree;
      print(r);
    },
    onCheckpoint: (step, error) =>
      print({ type: 'checkpoint', step, written: error === undefined, ...(error === undefined ? {} : { reason: error.slice(0, 1000) }) }),
  });
  const summary: SummaryLine = {
    type: 'summary',
    stepsCommitted: out.stepsCommitted,
    lastStep: out.lastStep,
    loss: { first: out.loss.first ?? null, last: out.loss.last ?? null },
    paramsHash: out.paramsHash ?? null,
    pods: out.pods,
    podsIdenticalEveryStep: identical && out.stepsCommitted > 0,
    rejected: out.rejected,
    duplicates: out.duplicates,
    faultsInjected: out.faultsInjected,
    podsReported: out.podsReported,
    trainMs: performance.now() - started,
    failure: out.failure ? failureReport(out.failure) : null,
    retried: out.retried.map(failureReport),
    logged: ((await runLog.last())?.step ?? -1) + 1,
    restores: out.restores,
  };
  stream.exited(out.failure ? 1 : 0);
  stream.line(summary); // in a container the recorder reads the summary from the stream, whose end comes next
  await sink?.close(); // its events before the summary: the launcher records the run's end on it
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  // in a container there is no launcher to print the table: LOCKSTEP_SUMMARY=table prints it on stderr
  if (process.env.LOCKSTEP_SUMMARY === 'table') process.stderr.write(summaryTable(t, summary));
  await nc.drain();
  await lnc.drain();
  return out.failure ? 1 : 0;
}
