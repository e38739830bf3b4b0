import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { modelPresets, parameterCount, parseTopology, preset, type Topology } from '@lockstep/topology';
import { clusterPlan } from '@lockstep/infra';
import { localRendering } from './local.ts';
import { findNatsServer, localPorts, startNatsServers } from './nats.ts';
import { launch, type TrainResult } from './launcher.ts';
import { stopAll } from './processes.ts';
import { Reaper } from './reaper.ts';
import { defaultWorkers, runOne, runPlan, scheduleFor, summarize } from './sim.ts';
import { dispatchBench, dispatchMarkdown, type DispatchBench } from './bench-dispatch.ts';
import { edgeExchange, tcpThroughput } from './wirebench.ts';
import { summarizeProfiles, type ProfileSummary } from './profile.ts';
import { makeDirs } from './private.ts';
import { scaleBench, scaleMarkdown, type ScaleBench } from './bench-scale.ts';

/**
 * `lockstep bench`: lockstep's step time against raw NATS measured in the same
 * run, on the same two-server cluster layout (pod 0's server to pod 1's, over
 * the route that stands for the DCN).
 */
export interface NatsBaseline {
  /** One-way latency of a small message, publisher on pod 0's server, subscriber on pod 1's (ms). */
  oneWayMs: { p50: number; p90: number; mean: number };
  /** Throughput of `chunkBytes` messages across the route, one stream (MiB/s). */
  throughputMiBps: number;
  chunkBytes: number;
  /** A raw Node TCP socket over loopback in the same run, same chunk size, one stream (MiB/s). */
  tcpMiBps: number;
  /** One 16 MiB gradient shard at a time through two real edges across the same route (MiB/s; see edgeExchange). */
  edgeExchangeMiBps: number;
  /**
   * CPU time of the bench's own process (both ends: the publisher and the subscriber, or the two edges; the
   * servers left out) per MiB moved, for raw NATS and through the edges (ms/MiB). Less sensitive than MiB/s to
   * other load on the machine: what the edge adds to what NATS's client costs.
   */
  cpuMsPerMiB: { rawNats: number; edges: number };
}

export interface BenchCase {
  name: string;
  topology: string;
  pods: number;
  hostsPerPod: number;
  parameters: number;
  gradientMiB: number;
  steps: number;
  stepsPerSecond: number;
  phaseMs: TrainResult['phaseMs'];
  /** Messages one after the other on a step's critical path (control hops plus the three data hops). */
  criticalPathMessages: number;
  /** Control plane: mean step time / (critical path messages x one-way latency). Target <= 3. */
  controlRatio?: number;
  /** Data plane: bytes crossing the DCN per step / mean exchange phase time, vs raw NATS throughput. Target >= 0.9 (issue 11). */
  exchangeMiBps?: number;
  exchangeRatio?: number;
  paramsHash: string | null;
}

/** `lockstep sim` in the bench: seeded schedules of 20 steps on tiny, and optionally palm-540b fault-free. */
export interface SimBench {
  topology: string;
  steps: number;
  schedules: number;
  workers: number;
  failed: number;
  /** Target: >= 1000 schedules of 20 steps on tiny a minute on this 2-core machine. */
  schedulesPerMinute: number;
  simulatedSecondsPerWallSecond: number;
  /** palm-540b (2 x 768 hosts, small model), fault-free, when asked for (`--sim-palm-steps`). */
  palm?: {
    steps: number;
    stepsCommitted: number;
    recovered: boolean;
    wallSeconds: number;
    simulatedStepsPerWallSecond: number;
    messages: number;
  };
}

/** A CPU profile of `demo` (small model) with its hosts one to a process and four to a process (see profile.ts). */
export interface ProfileBench {
  layout: 'one host a process' | 'four hosts a process';
  steps: number;
  stepsPerSecond: number;
  summary: ProfileSummary;
}

/** The headline figures under stable names (the issue's targets beside them in the README). */
export interface BenchFigures {
  /** Step ms / (critical-path messages x one-way p50), small model. Target <= 3. */
  controlRatio: { tiny?: number; demo?: number };
  /** Exchange MiB/s in a training run (16 MiB gradient) / raw NATS MiB/s. Target >= 0.9. */
  exchangeOverRawNats: { tiny?: number; demo?: number };
  /** One 16 MiB shard through two edges alone / raw NATS MiB/s (the edge's own cost, without the rest of a step). */
  edgeExchangeOverRawNats: number;
  /** CPU ms per MiB through two edges / CPU ms per MiB of raw NATS, in the bench's own process (see NatsBaseline.cpuMsPerMiB). */
  edgeCpuOverRawNats: number;
  /** Raw NATS MiB/s / raw TCP over loopback MiB/s. */
  rawNatsOverTcp: number;
  /** The three largest per-step costs of the one-host-a-process profile (busy ms per step, all processes; start-up left out). */
  profileTop3?: { cost: string; msPerStep: number; share: number }[];
}

export interface BenchReport {
  date: string;
  machine: { cpus: number; node: string; loadAverage: number[] };
  baseline: NatsBaseline;
  /** One step in flight (dispatch.depth 1), as every earlier bench measured them. */
  cases: BenchCase[];
  /** demo/small at depth 1 and 2, and with compute held to a fixed time (see bench-dispatch.ts). */
  dispatch?: DispatchBench;
  /** The fraction of wall time the hosts compute, with compute held to a fixed time a phase: target >= 0.95 at depth 2. */
  computeFraction?: { depth1: number; depth2: number };
  sim?: SimBench;
  profiles?: ProfileBench[];
  /** 2 pods x H hosts in modeled mode (palm-540b's step at H hosts), the small model (see bench-scale.ts). */
  scale?: ScaleBench;
  figures: BenchFigures;
}

/**
 * `demo` with its role processes under `node --cpu-prof` (through LOCKSTEP_NODE_ARGS, which the launcher passes to
 * every role process), hosts one to a process and four to a process; each profile summarized by cost.
 */
export async function profileBench(opts: { dir: string; log: Logger; steps: number }): Promise<ProfileBench[]> {
  const out: ProfileBench[] = [];
  for (const [layout, hostsPerProcess] of [
    ['one host a process', 1],
    ['four hosts a process', 4],
  ] as const) {
    const t = parseTopology({ ...preset('demo'), hostsPerProcess });
    const profDir = join(opts.dir, `profile-${hostsPerProcess}`);
    mkdirSync(profDir, { recursive: true });
    const before = process.env.LOCKSTEP_NODE_ARGS;
    process.env.LOCKSTEP_NODE_ARGS = `${before ?? ''} --cpu-prof --cpu-prof-dir=${profDir}`.trim();
    try {
      const r = await launch({ topology: t, steps: opts.steps, runDir: join(opts.dir, `profile-run-${hostsPerProcess}`), log: opts.log });
      out.push({ layout, steps: opts.steps, stepsPerSecond: r.stepsPerSecond, summary: summarizeProfiles(profDir, opts.steps) });
    } finally {
      if (before === undefined) delete process.env.LOCKSTEP_NODE_ARGS;
      else process.env.LOCKSTEP_NODE_ARGS = before;
    }
  }
  return out;
}

/** Run `lockstep sim`'s schedules for the bench (in worker processes, as the CLI does). */
export async function simBench(opts: { seeds: number; palmSteps: number }): Promise<SimBench> {
  const plan = {
    topology: 'tiny' as const,
    steps: 20,
    profile: 'every' as const,
    seeds: Array.from({ length: opts.seeds }, (_, i) => i + 1),
    computeMs: 2,
    workers: defaultWorkers(),
  };
  const { lines, wallMs } = await runPlan(plan);
  const s = summarize(plan, lines, wallMs);
  const out: SimBench = {
    topology: s.topology,
    steps: s.steps,
    schedules: s.schedules,
    workers: s.workers,
    failed: s.failed.length,
    schedulesPerMinute: s.schedulesPerMinute,
    simulatedSecondsPerWallSecond: s.simulatedSecondsPerWallSecond,
  };
  if (opts.palmSteps > 0) {
    const r = await runOne({ ...scheduleFor({ ...plan, topology: 'palm-540b', steps: opts.palmSteps, profile: 'none' }, 1) });
    out.palm = {
      steps: opts.palmSteps,
      stepsCommitted: r.stepsCommitted,
      recovered: r.outcome.kind === 'recovered',
      wallSeconds: r.wallMs / 1000,
      simulatedStepsPerWallSecond: r.stepsCommitted / (r.wallMs / 1000),
      messages: r.delivered,
    };
  }
  return out;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

export async function natsBaseline(opts: {
  dir: string;
  log: Logger;
  chunkBytes: number;
  pings?: number;
  megabytes?: number;
}): Promise<NatsBaseline> {
  mkdirSync(join(opts.dir, 'logs'), { recursive: true });
  // the two pods' servers of a two-pod plan, without users: the same layout lockstep trains on
  const plan = clusterPlan(preset('tiny'), {
    runId: 'bench',
    steps: 1,
    topologyArg: 'tiny',
    place: { kind: 'local', dir: opts.dir, ports: await localPorts(2) },
  });
  const pods = localRendering(plan, opts.dir).servers.filter((s) => s.pod >= 0);
  // a reaper ends the two servers however the bench ends (a SIGTERM or SIGKILL leaves no exit hook to run)
  const reaper = Reaper.start();
  let nodes: Awaited<ReturnType<typeof startNatsServers>> = [];
  try {
    nodes = await startNatsServers(pods, { bin: findNatsServer(), log: opts.log, onSpawn: (c) => reaper.track(c) });
  } catch (err) {
    reaper.close();
    throw err;
  }
  const conns: NatsConnection[] = [];
  try {
    const a = await connect({ servers: nodes[0].url });
    conns.push(a);
    const b = await connect({ servers: nodes[1].url });
    conns.push(b);
    // wait for the route to carry interest
    // (a callback, not an iterator: a probe that did not come in 50 ms must not be waited for twice)
    let probed = false;
    const probe = b.subscribe('bench.probe', {
      callback: () => {
        probed = true;
      },
    });
    await b.flush();
    for (let i = 0; i < 200 && !probed; i++) {
      a.publish('bench.probe');
      await a.flush();
      await new Promise((r) => setTimeout(r, 50));
    }
    probe.unsubscribe();
    if (!probed) throw new Error("baseline: pod 1's server never heard pod 0's over their route in 10 s");

    // one-way latency: one message in flight at a time
    // (a ping not back in a second is sent again: the subscription's interest may not yet have crossed the route)
    const lat: number[] = [];
    const pings = opts.pings ?? 2000;
    let retry: NodeJS.Timeout | undefined;
    let latSub: { unsubscribe(): void } | undefined;
    await new Promise<void>((resolve, reject) => {
      const deadline = performance.now() + 60_000;
      const send = () => {
        clearTimeout(retry);
        if (performance.now() > deadline) return reject(new Error(`baseline: only ${lat.length} of ${pings} pings came back in 60 s`));
        const buf = new Uint8Array(64);
        new DataView(buf.buffer).setFloat64(0, performance.now(), true);
        a.publish('bench.lat', buf);
        retry = setTimeout(send, 1000);
      };
      latSub = b.subscribe('bench.lat', {
        callback: (_e, m) => {
          lat.push(performance.now() - new DataView(m.data.buffer, m.data.byteOffset).getFloat64(0, true));
          if (lat.length >= pings) {
            clearTimeout(retry);
            resolve();
          } else send();
        },
      });
      void b.flush().then(send);
    }).finally(() => {
      clearTimeout(retry);
      latSub?.unsubscribe();
    });

    // throughput: `megabytes` of chunks across the route, with flow control: at most `window` chunks (8 MiB) sent and
    // not yet received, so the receiving server never drops them as a slow consumer's
    const total = (opts.megabytes ?? 256) * 1024 * 1024;
    const n = Math.ceil(total / opts.chunkBytes);
    const window = Math.max(8, Math.floor((8 * 1024 * 1024) / opts.chunkBytes));
    const payload = new Uint8Array(opts.chunkBytes);
    let got = 0;
    let wake: (() => void) | undefined;
    const done = new Promise<void>((resolve) => {
      b.subscribe('bench.tput', {
        callback: () => {
          if (++got >= n) resolve();
          wake?.();
        },
      });
    });
    await b.flush();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const deadline = t0 + 60_000;
    const stalled = () => new Error(`baseline: only ${got} of ${n} messages arrived in 60 s`);
    for (let i = 0; i < n; i++) {
      while (i - got >= window) {
        if (performance.now() > deadline) throw stalled();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
      a.publish('bench.tput', payload);
      if (i % 16 === 15) await a.flush();
    }
    await a.flush();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(stalled()), Math.max(0, deadline - performance.now()));
      }),
    ]).finally(() => clearTimeout(timer));
    const secs = (performance.now() - t0) / 1000;
    const rawCpu = process.cpuUsage(cpu0);
    // the same 16 MiB shards through lockstep's edges, on the same connections and route
    const edges = await edgeExchange({
      from: a,
      to: b,
      tensorBytes: 16 * 1024 * 1024,
      chunkBytes: opts.chunkBytes,
      rounds: Math.max(1, Math.round((opts.megabytes ?? 256) / 16)),
      log: opts.log,
    });
    const tcpMiBps = await tcpThroughput({ chunkBytes: opts.chunkBytes, megabytes: opts.megabytes ?? 256 });
    return {
      oneWayMs: { p50: quantile(lat, 0.5), p90: quantile(lat, 0.9), mean: lat.reduce((x, y) => x + y, 0) / lat.length },
      throughputMiBps: (n * opts.chunkBytes) / (1024 * 1024) / secs,
      chunkBytes: opts.chunkBytes,
      tcpMiBps,
      edgeExchangeMiBps: edges.mibps,
      cpuMsPerMiB: { rawNats: (rawCpu.user + rawCpu.system) / 1000 / ((n * opts.chunkBytes) / (1024 * 1024)), edges: edges.cpuMsPerMiB },
    };
  } finally {
    for (const c of conns) await c.close();
    await stopAll(nodes.map((x) => ({ process: x.process })));
    reaper.close();
  }
}

/**
 * Messages in sequence on a step: dispatch, host.dispatch, [grad.slice],
 * [grad.exchange], [param.shard], host.prepared, pod.prepared, the run log
 * record and its JetStream ack (written before any pod hears the commit),
 * commit, host.commit, host.committed, pod.committed.
 */
export function criticalPath(t: Topology): number {
  return 10 + (t.hostsPerPod > 1 ? 2 : 0) + (t.pods > 1 ? 1 : 0);
}

export async function runBench(opts: {
  dir: string;
  log: Logger;
  smallSteps: number;
  largeSteps: number;
  /** Schedules of `lockstep sim` to time (0: none), and palm-540b steps in the simulator (0: none). */
  simSeeds?: number;
  /** Run the dispatch-depth cases (default true); `onDispatch` hears of each. */
  dispatch?: boolean;
  onDispatch?: (line: string) => void;
  simPalmSteps?: number;
  /** Steps of each profiled `demo` run (0: no profile). */
  profileSteps?: number;
  /** Hosts a pod of the scaling table's rows (empty: no table), and steps a row. */
  scaleSizes?: number[];
  scaleSteps?: number;
  onScaleRow?: (line: string) => void;
  onCase?: (c: BenchCase) => void;
}): Promise<BenchReport> {
  const chunkBytes = preset('demo').wire.chunkBytes;
  const baseline = await natsBaseline({ dir: join(opts.dir, 'baseline'), log: opts.log, chunkBytes });
  const cases: BenchCase[] = [];
  let demoSmall: TrainResult | undefined;
  for (const name of ['tiny', 'demo'] as const) {
    for (const size of ['small', 'large'] as const) {
      const base = preset(name);
      const workers = base.pods * base.hostsPerPod;
      // the large model computes one sample per host so the step measures the wire, not the CPU; one step in flight,
      // as every bench before parallel dispatch measured (the dispatch section below has depth 2)
      const t = parseTopology({
        ...base,
        model: modelPresets[size],
        training: size === 'large' ? { ...base.training, globalBatch: workers, optimizer: { kind: 'adam', lr: 1e-4 } } : base.training,
        dispatch: { depth: 1 },
      });
      const steps = size === 'small' ? opts.smallSteps : opts.largeSteps;
      const r = await launch({ topology: t, steps, runDir: join(opts.dir, `${name}-${size}`), log: opts.log });
      if (name === 'demo' && size === 'small') demoSmall = r;
      const params = parameterCount(t.model);
      const c: BenchCase = {
        name: `${name}/${size}`,
        topology: name,
        pods: t.pods,
        hostsPerPod: t.hostsPerPod,
        parameters: params,
        gradientMiB: (params * 4) / (1024 * 1024),
        steps,
        stepsPerSecond: r.stepsPerSecond,
        phaseMs: r.phaseMs,
        criticalPathMessages: criticalPath(t),
        paramsHash: r.paramsHash,
      };
      if (size === 'small') c.controlRatio = r.phaseMs.step / (c.criticalPathMessages * baseline.oneWayMs.p50);
      else {
        // every host sends its pod's gradient of its shard to the other pod: the whole gradient crosses the DCN once each way
        const crossBytes = params * 4 * t.pods * (t.pods - 1);
        c.exchangeMiBps = crossBytes / (1024 * 1024) / ((r.phaseMs.exchange ?? 0) / 1000);
        c.exchangeRatio = c.exchangeMiBps / baseline.throughputMiBps;
      }
      cases.push(c);
      opts.onCase?.(c);
    }
  }
  const dispatch =
    opts.dispatch === false
      ? undefined
      : await dispatchBench({
          dir: opts.dir,
          log: opts.log,
          steps: opts.smallSteps,
          perMessageMs: criticalPath(preset('demo')) * baseline.oneWayMs.p50,
          depth1: demoSmall,
          onRow: opts.onDispatch,
        });
  const computeFraction = dispatch && {
    depth1: dispatch.compute.find((c) => c.depth === 1)!.computeFraction,
    depth2: dispatch.compute.find((c) => c.depth === 2)!.computeFraction,
  };
  const profiles = opts.profileSteps ? await profileBench({ dir: opts.dir, log: opts.log, steps: opts.profileSteps }) : undefined;
  const sim = opts.simSeeds ? await simBench({ seeds: opts.simSeeds, palmSteps: opts.simPalmSteps ?? 0 }) : undefined;
  const scale = opts.scaleSizes?.length
    ? await runScale({ dir: opts.dir, log: opts.log, sizes: opts.scaleSizes, steps: opts.scaleSteps ?? 10, onLine: opts.onScaleRow })
    : undefined;
  return {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version, loadAverage: loadavg() },
    baseline,
    cases,
    dispatch,
    computeFraction,
    sim,
    profiles,
    scale,
    figures: benchFigures(baseline, cases, profiles),
  };
}

/** The scaling table's rows, one after the other, each told to `onLine` as it ends. */
export function runScale(opts: {
  dir: string;
  log: Logger;
  sizes: number[];
  steps: number;
  onLine?: (line: string) => void;
}): Promise<ScaleBench> {
  return scaleBench({
    sizes: opts.sizes,
    steps: () => opts.steps,
    dir: join(opts.dir, 'scale'),
    log: opts.log,
    onRow: (r) =>
      opts.onLine?.(
        `scale 2 x ${r.hostsPerPod} ${r.inPod}: ${r.natsMsgsPerStep.toFixed(0)} NATS msgs/step, ${r.wallMsPerStep.toFixed(1)} wall ms/step (control plane ${r.controlMsPerStep.toFixed(1)}), ${r.cpuMsPerStep.toFixed(1)} CPU ms/step, peak RSS ${r.peakRssMiB.toFixed(0)} MiB, start-up ${r.startupMs.toFixed(0)} ms${r.failure ? `, FAILED: ${r.failure}` : ''}`,
      ),
  });
}

/** A profile's costs without start-up, which a process pays once, not each step. */
function perStep(s: ProfileSummary) {
  return s.costs.filter((c) => c.cost !== 'start-up (module loading)');
}

/** The headline figures of a bench run, by their stable names. */
export function benchFigures(baseline: NatsBaseline, cases: BenchCase[], profiles?: ProfileBench[]): BenchFigures {
  const of = (topology: string, size: string) => cases.find((c) => c.name === `${topology}/${size}`);
  const top = profiles?.find((p) => p.layout === 'one host a process');
  return {
    controlRatio: { tiny: of('tiny', 'small')?.controlRatio, demo: of('demo', 'small')?.controlRatio },
    exchangeOverRawNats: { tiny: of('tiny', 'large')?.exchangeRatio, demo: of('demo', 'large')?.exchangeRatio },
    edgeExchangeOverRawNats: baseline.edgeExchangeMiBps / baseline.throughputMiBps,
    edgeCpuOverRawNats: baseline.cpuMsPerMiB.edges / baseline.cpuMsPerMiB.rawNats,
    rawNatsOverTcp: baseline.throughputMiBps / baseline.tcpMiBps,
    profileTop3: top && perStep(top.summary).slice(0, 3),
  };
}

export function benchMarkdown(r: BenchReport): string {
  const f = (x: number | undefined, d = 2) => (x === undefined ? '-' : x.toFixed(d));
  const lines = [
    `# lockstep bench, ${r.date}`,
    '',
    `Machine: ${r.machine.cpus} CPUs, Node ${r.machine.node}, load average ${r.machine.loadAverage.map((x) => x.toFixed(1)).join(', ')} at the end (1, 5, 15 min). Command: \`npm run bench\`.`,
    '',
    `Raw NATS across the pods' route, same run: one-way latency p50 ${f(r.baseline.oneWayMs.p50, 3)} ms (p90 ${f(r.baseline.oneWayMs.p90, 3)} ms); throughput ${f(r.baseline.throughputMiBps, 0)} MiB/s in ${r.baseline.chunkBytes / 1024} KiB messages; raw TCP over loopback ${f(r.baseline.tcpMiBps, 0)} MiB/s (NATS / TCP ${f(r.figures.rawNatsOverTcp)}); one 16 MiB shard at a time through two edges ${f(r.baseline.edgeExchangeMiBps, 0)} MiB/s (edge / NATS ${f(r.figures.edgeExchangeOverRawNats)}); CPU of the bench's process per MiB: raw NATS ${f(r.baseline.cpuMsPerMiB.rawNats)} ms, through the edges ${f(r.baseline.cpuMsPerMiB.edges)} ms (edge / NATS ${f(r.figures.edgeCpuOverRawNats)}).`,
    '',
    '| case | params | gradient MiB | steps/s | step ms | fwd | bwd | reduce-scatter | exchange | update | all-gather | critical-path msgs | control ratio (target <= 3) | exchange MiB/s | exchange / raw NATS (target >= 0.9) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.cases
      .map((c) =>
        [
          c.name,
          c.parameters,
          f(c.gradientMiB, 2),
          f(c.stepsPerSecond),
          f(c.phaseMs.step),
          f(c.phaseMs.forward),
          f(c.phaseMs.backward),
          f(c.phaseMs.reduceScatter),
          f(c.phaseMs.exchange),
          f(c.phaseMs.update),
          f(c.phaseMs.allGather),
          c.criticalPathMessages,
          f(c.controlRatio, 1),
          f(c.exchangeMiBps, 0),
          f(c.exchangeRatio, 2),
        ].join(' | '),
      )
      .map((row) => `| ${row} |`),
    '',
    "One step in flight (dispatch.depth 1) in these cases. Phase times are the slowest host's, averaged over steps. Control ratio = step ms / (critical-path messages x one-way p50). Exchange MiB/s = gradient bytes crossing the DCN per step (each pod's whole gradient, once each way) / exchange phase ms.",
    ...(r.dispatch ? dispatchMarkdown(r.dispatch) : []),
    ...(r.profiles?.length
      ? [
          '',
          'Largest costs per step from `node --cpu-prof` of every role process of `demo` (small model): busy ms per step summed over processes (sampled; on a loaded machine a process waiting for a core counts as busy). Busy ms/step includes start-up; the three largest leave it out (it is paid once).',
          '',
          '| layout | steps/s | busy ms/step | 1st | 2nd | 3rd |',
          '|---|---:|---:|---|---|---|',
          ...r.profiles.map(
            (p) =>
              `| ${p.layout} | ${f(p.stepsPerSecond)} | ${f(p.summary.cpuMsPerStep, 0)} | ${perStep(p.summary)
                .slice(0, 3)
                .map((c) => `${c.cost} ${f(c.msPerStep, 1)} ms (${f(c.share * 100, 0)}%)`)
                .join(' | ')} |`,
          ),
        ]
      : []),
    ...(r.sim
      ? [
          '',
          `Simulator (\`lockstep sim\`, ${r.sim.workers} worker processes): ${r.sim.schedules} schedules of ${r.sim.steps} steps on ${r.sim.topology}, every fault profile in turn: ${f(r.sim.schedulesPerMinute, 0)} schedules a minute (target >= 1000), ${f(r.sim.simulatedSecondsPerWallSecond, 1)} simulated s per wall s, ${r.sim.failed} failing.`,
          ...(r.sim.palm
            ? [
                `palm-540b (2 x 768 hosts, small model) fault-free in the simulator: ${r.sim.palm.stepsCommitted}/${r.sim.palm.steps} steps ${r.sim.palm.recovered ? 'to the reference bits' : 'NOT recovered'} in ${f(r.sim.palm.wallSeconds, 0)} s (${r.sim.palm.simulatedStepsPerWallSecond.toExponential(2)} simulated steps per wall s; ${r.sim.palm.messages} messages delivered).`,
              ]
            : []),
        ]
      : []),
    ...(r.scale ? ['', scaleSection(r.scale)] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** The scaling table with its headline figures (targets: palm-540b under 1 s a step; cost linear in hosts). */
export function scaleSection(s: ScaleBench): string {
  const f = (x: number | null, d = 2) => (x === null ? '-' : x.toFixed(d));
  return [
    "Scaling (2 pods x H hosts in modeled mode: palm-540b's step, each run host taking a host of the modeled 768-host pod's phase times at timeScale 100, 150.6 ms of wall time a step; small model, real processes and NATS; chain collectives, and direct up to 256 hosts; per-step figures after two warm-up steps): NATS messages are the pods' servers' `in_msgs`; the control plane's ms are the wall ms less the modeled phases'; CPU is every role process's user + system time.",
    '',
    scaleMarkdown(s),
    '',
    `Growth between the two largest rows over the growth in hosts (1: linear; the ratio of hosts: quadratic): CPU ${f(s.cpuGrowthOverHosts)}, NATS messages ${f(s.msgsGrowthOverHosts)}. palm-540b control-plane wall ms a step: ${f(s.palmControlMsPerStep, 0)} (target < 1000: ${s.palmUnderOneSecond === null ? 'not run' : s.palmUnderOneSecond ? 'met' : 'not met'}).`,
  ].join('\n');
}

export function writeBench(r: BenchReport, dir: string): { json: string; md: string } {
  makeDirs(dir);
  const stamp = r.date.replace(/[:.]/g, '-');
  const json = join(dir, `bench-${stamp}.json`);
  const md = join(dir, `bench-${stamp}.md`);
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, benchMarkdown(r));
  writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(dir, 'latest.md'), benchMarkdown(r));
  return { json, md };
}
