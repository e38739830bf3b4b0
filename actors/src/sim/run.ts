import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { createActor, fromPromise, type AnyActorRef } from 'xstate';
import {
  ReferenceTrainer,
  actorNames,
  describeFailure,
  hostPhaseFloorsMs,
  shardHash,
  shardRanges,
  type FailureKind,
  type SimSchedule,
  type Topology,
} from '@lockstep/topology';
import { checkpointActor, hostDiskActor } from '../checkpoint/actors.ts';
import { loadCheckpoint } from '../checkpoint/store.ts';
import { ticker, type Timed } from '../clock.ts';
import { clientMachine, type ClientOutput, type StepRecord } from '../client/client.machine.ts';
import { computeFor, type BackwardInput, type ForwardInput, type UpdateInput } from '../host/host.actors.ts';
import type { CommittedState } from '../host/heal.ts';
import { hostMachine } from '../host/host.machine.ts';
import { podMachine } from '../pod/pod.machine.ts';
import { edgeFor } from '../wire/edge.ts';
import { hostTensorLength, listenFor } from '../wire/listen.ts';
import { SimClock, SimRandom } from './clock.ts';
import { MemDisk } from './disk.ts';
import { ComputeMemo } from './memo.ts';
import { SimNetwork, noNetFaults, type NetEvent } from './network.ts';
import { MemRunLog } from './runlog.ts';

/** How a simulated run ended. `recovered`: every step committed, to the reference bits. */
export type SimOutcome =
  | { kind: 'recovered' }
  /** The run ended with a typed failure (the client's), though every fault had stopped. */
  | { kind: 'failed'; failure: FailureKind; message: string }
  /** An invariant broke: a step committed twice or skipped, pods that disagree, bits that differ from the reference. */
  | { kind: 'violation'; invariant: string; message: string }
  /** No end within the liveness bound after the faults stopped (or nothing left to happen). */
  | { kind: 'hang'; message: string };

export interface SimResult {
  seed: number;
  outcome: SimOutcome;
  /** SHA-256 over every delivery (time, subject, receiver, bytes) and the outcome: the same schedule gives the same hash. */
  eventsHash: string;
  simulatedMs: number;
  wallMs: number;
  /** Timers fired (deliveries, delays, ticks, compute completions). */
  events: number;
  stepsCommitted: number;
  retried: number;
  restarts: number;
  restores: number;
  delivered: number;
  dropped: number;
  /** The schedule's faults that fired (one timed after the run ended never does). */
  faultsFired: number;
  /** With `trace`: what the network did and what the schedule did, in order. */
  trace?: (
    | NetEvent
    | { t: number; what: 'fault'; fault: SimSchedule['faults'][number] }
    | { t: number; what: 'restart'; actor: string }
    /**
     * An actor's phase or pipeline changed; `tags`: the machine's state tags (a host's `compute`, `awaitsTensors`);
     * `awaitingCommit`: the steps a host prepared that await their commits; `ahead`: the steps a pod or the client
     * dispatched after the one it commits next.
     */
    | {
        t: number;
        what: 'state';
        actor: string;
        phase: string;
        step: number;
        attempt: number;
        tags: string[];
        awaitingCommit?: number[];
        ahead?: number[];
      }
  )[];
}

export interface SimOptions {
  inPodMs?: number;
  crossPodMs?: number;
  trace?: boolean;
  /**
   * Silent data corruption: host `host` of each pod in `pods` flips the lowest bit of the first
   * parameter of its update at step `step` (every attempt). One pod: the pods disagree; every pod: the
   * pods agree on bits that are not the reference's.
   */
  corrupt?: { step: number; host: number; pods: number[] };
}

const silent = pino({ level: 'silent' });
/** Where a host takes a committed state other than by committing a step it prepared: healing from a peer, a checkpoint. */
const ADOPTS: ReadonlySet<string> = new Set(['joining', 'healing', 'restoring', 'lost']);
/** Forward and backward results of this thread's schedules, reused where the inputs are bit-identical (see ComputeMemo). */
const memo = new ComputeMemo();
const RUN = 'sim';
const DIR = '/sim/ckpt';

/** Per-step reference bits (paramsHash and each shard's hash), computed once per topology and length. */
const referenceCache = new Map<string, { paramsHash: string[]; shardHashes: string[][] }>();
export function referenceBits(t: Topology, steps: number): { paramsHash: string[]; shardHashes: string[][] } {
  const key = `${JSON.stringify(t)}|${steps}`;
  let r = referenceCache.get(key);
  if (!r) {
    const ref = new ReferenceTrainer(t);
    const ranges = shardRanges(ref.params.length, t.hostsPerPod);
    r = { paramsHash: [], shardHashes: [] };
    for (let s = 0; s < steps; s++) {
      r.paramsHash.push(ref.runStep().paramsHash);
      r.shardHashes.push(ranges.map((x) => shardHash(ref.params.subarray(x.start, x.end))));
    }
    if (referenceCache.size > 16) referenceCache.clear();
    referenceCache.set(key, r);
  }
  return r;
}

class Violation extends Error {
  constructor(
    readonly invariant: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Run one schedule: the real client, pod and host machines (with the real
 * edge: schema, sender, dedup, reassembly), on a simulated clock and network,
 * with a run log and a disk in memory. Crashed actors restart as a real
 * launcher restarts them: a host heals from its cross-pod peer, a pod rejoins,
 * the client resumes from the run log. Checks the invariants as it goes.
 */
export async function simulate(topology: Topology, schedule: SimSchedule, opts: SimOptions = {}): Promise<SimResult> {
  const began = performance.now();
  const t = withInPod(withDispatchDepth(topology, schedule.dispatchDepth), schedule.inPod);
  const steps = schedule.steps;
  // the depth changes when steps run, never their bits
  const ref = referenceBits(topology, steps);
  const clock = new SimClock();
  const rng = new SimRandom(schedule.seed);
  const net = new SimNetwork(clock, rng, { inPodMs: opts.inPodMs ?? 0.2, crossPodMs: opts.crossPodMs ?? 1 }, opts.trace);
  const disk = new MemDisk();
  const runLog = new MemRunLog(clock);
  const computeMs = schedule.computeMs;
  const place = { dir: DIR, topology: t, runId: RUN, log: silent, clock, disk };
  const trace = net.trace as SimResult['trace'];
  let drain = false;
  let violation: Violation | undefined;
  let clientOut: ClientOutput | undefined;
  let restarts = 0;
  let faultsFired = 0;
  const lives = new Map<string, number>();
  const live = new Map<string, { actor: AnyActorRef; close: () => void }>();

  /** Run `f` now and settle with its result (or its error) `ms` of simulated time later: how a simulated computation or disk read takes time. */
  const settleLater = <T>(f: () => T, ms: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      let settle: () => void;
      try {
        const value = f();
        settle = () => resolve(value);
      } catch (err) {
        settle = () => reject(err);
      }
      clock.setTimeout(() => {
        drain = true;
        settle();
      }, ms);
    });
  /** A promise actor that computes now and finishes after `ms()` of simulated time, saying when. */
  const later = <I, O>(f: (i: I) => O, ms: () => number) =>
    fromPromise<Timed<O>, I>(({ input }) => settleLater(() => f(input), ms()).then((value) => ({ value, at: clock.now() })));
  const jitter = (base: number) => base * (0.75 + 0.5 * rng.next());
  // the least time of each phase (`compute: modeled` or `{ fixedMs }`), as a real host takes it (host.actors.ts)
  const floors = hostPhaseFloorsMs(t);
  const atLeast = (ms: number, least: number | undefined) => Math.max(ms, least ?? 0);
  const phaseFloor = fromPromise<Timed<void>, { ms: number }>(({ input }) =>
    input.ms > 0
      ? settleLater(() => undefined, input.ms).then(() => ({ value: undefined, at: clock.now() }))
      : new Promise<never>(() => {}),
  );
  const computeOf = (pod: number, host: number) => {
    const c = opts.corrupt;
    const corrupts = c && c.host === host && c.pods.includes(pod);
    const update = (i: UpdateInput) => {
      const out = computeFor.applyUpdate(i);
      if (!corrupts || i.step !== c.step) return out;
      const params = Float32Array.from(out.params);
      new Uint32Array(params.buffer)[0] ^= 1;
      return { ...out, params };
    };
    return {
      forwardPass: later(
        (i: ForwardInput) => memo.forwardPass(i),
        () => atLeast(jitter(computeMs), floors.forward),
      ),
      backwardPass: later(
        (i: BackwardInput) => memo.backwardPass(i),
        () => atLeast(jitter(2 * computeMs), floors.backward),
      ),
      applyUpdate: later(update, () => atLeast(jitter(computeMs / 2), floors.update)),
      phaseFloor,
    };
  };

  const fail = (invariant: string, message: string) => {
    violation ??= new Violation(invariant, message);
  };

  const watchErrors = (name: string, a: AnyActorRef) => {
    a.subscribe({ error: (err) => fail('no actor error', `${name} threw: ${(err as Error)?.message ?? err}`) });
    if (!trace) return;
    let last = '';
    type Pipelined = { phase: string; step: number; attempt: number; pending?: { step: number }[]; ahead?: { step: number }[] };
    a.subscribe((snap: { context: Pipelined; tags: Set<string> }) => {
      const c = snap.context;
      const awaitingCommit = c.pending?.map((p) => p.step);
      const ahead = c.ahead?.map((x) => x.step);
      const key = `${c.phase}/${c.step}/${c.attempt}/${awaitingCommit}/${ahead}`;
      if (key === last) return;
      last = key;
      trace.push({
        t: clock.now(),
        what: 'state',
        actor: name,
        phase: c.phase,
        step: c.step,
        attempt: c.attempt,
        tags: [...snap.tags].sort(),
        ...(awaitingCommit ? { awaitingCommit } : {}),
        ...(ahead ? { ahead } : {}),
      });
    });
  };

  const startHost = (pod: number, host: number, heal: boolean) => {
    const name = actorNames.host(pod, host);
    const life = (lives.get(name) ?? 0) + 1;
    lives.set(name, life);
    const tr = net.transport(name, pod);
    const wire = edgeFor(t, 'host', {
      transport: tr,
      clock,
      runId: RUN,
      log: silent,
      expectedLength: hostTensorLength(t, host),
      listen: listenFor(t, RUN, { role: 'host', pod, host }),
    });
    const load = fromPromise<CommittedState, { checkpoint: number }>(({ input }) =>
      settleLater(() => loadCheckpoint(DIR, t, RUN, host, input.checkpoint, disk), 1),
    );
    const a = createActor(
      hostMachine.provide({
        actors: { wire, clock: ticker(clock), disk: hostDiskActor(place), loadCheckpoint: load, ...computeOf(pod, host) },
      }),
      { input: { topology: t, runId: RUN, pod, host, incarnation: `${life}`, heal, now: clock.now() }, clock },
    );
    watchErrors(name, a);
    // invariants on every host: each commit is the next step, and every state it holds as committed has the reference bits
    let lastStep = -1;
    let lastPhase = '';
    a.subscribe((s) => {
      const c = s.context;
      const lc = c.lastCommitted;
      if (lc && lc.step !== lastStep) {
        // a commit (not a state healed from a peer or loaded from a checkpoint) is the next step
        if (!ADOPTS.has(lastPhase) && lc.step !== lastStep + 1)
          fail('each step committed once, in order', `${name} committed step ${lc.step} after step ${lastStep}`);
        const want = ref.shardHashes[lc.step]?.[host];
        if (lc.shardHash !== want)
          fail(
            'bits equal the reference',
            `${name} holds step ${lc.step} as shard ${lc.shardHash.slice(0, 12)}, the reference ${want?.slice(0, 12)}`,
          );
        lastStep = lc.step;
      } else if (!lc) lastStep = -1;
      lastPhase = c.phase;
      // the pipeline: the steps awaiting commit are exactly those between the last commit and the step in flight
      const from = lc ? lc.step + 1 : 0;
      if (c.pending.some((p, i) => p.step !== from + i) || c.step !== from + c.pending.length)
        fail(
          'prepared steps follow the last commit',
          `${name} holds prepared steps ${c.pending.map((p) => p.step).join(', ')} after committing ${from - 1}, computing ${c.step}`,
        );
    });
    a.start();
    live.set(name, { actor: a, close: tr.close });
  };

  const startPod = (pod: number, rejoin: boolean) => {
    const name = actorNames.pod(pod);
    const life = (lives.get(name) ?? 0) + 1;
    lives.set(name, life);
    const tr = net.transport(name, pod);
    const wire = edgeFor(t, 'pod', { transport: tr, clock, runId: RUN, log: silent, listen: listenFor(t, RUN, { role: 'pod', pod }) });
    const a = createActor(podMachine.provide({ actors: { wire, clock: ticker(clock) } }), {
      input: { topology: t, runId: RUN, pod, incarnation: `${life}`, rejoin, now: clock.now() },
      clock,
    });
    watchErrors(name, a);
    let last: string | undefined;
    a.subscribe((s) => {
      const lc = s.context.lastCommitted;
      if (!lc || `${lc.step}/${lc.paramsHash}` === last) return;
      last = `${lc.step}/${lc.paramsHash}`;
      const want = ref.paramsHash[lc.step];
      if (lc.paramsHash !== want)
        fail(
          'pods agree at every commit',
          `${name} committed step ${lc.step} as ${lc.paramsHash.slice(0, 12)}, the reference ${want?.slice(0, 12)}`,
        );
    });
    a.start();
    live.set(name, { actor: a, close: tr.close });
  };

  let lastRecorded = -1;
  /** Steps the client reported committed other than as a replay: each must be, once the run is over. */
  const reported = new Set<number>();
  /** Client crashes (`inReplay`) whose time has come, waiting for the client's next replayed commit. */
  const armedInReplay: SimSchedule['faults'] = [];
  const startClient = (resume: boolean) => {
    const name = actorNames.client;
    const life = (lives.get(name) ?? 0) + 1;
    lives.set(name, life);
    const tr = net.transport(name, 0);
    const wire = edgeFor(t, 'client', { transport: tr, clock, runId: RUN, log: silent, listen: listenFor(t, RUN, { role: 'client' }) });
    const last = resume ? runLog.last() : undefined;
    const a = createActor(
      clientMachine.provide({ actors: { wire, clock: ticker(clock), runlog: runLog.actor(), checkpoints: checkpointActor(place) } }),
      { input: { topology: t, runId: RUN, incarnation: `${life}`, steps, resume: last, now: clock.now() }, clock },
    );
    watchErrors(name, a);
    a.on('step.committed', (r: StepRecord) => {
      if (!r.podsAgree)
        fail('pods agree at every commit', `step ${r.step}: pods' hashes differ (${r.podHashes.map((h) => h.slice(0, 12)).join(', ')})`);
      if (r.paramsHash !== ref.paramsHash[r.step])
        fail(
          'bits equal the reference',
          `step ${r.step} committed as ${r.paramsHash.slice(0, 12)}, the reference ${ref.paramsHash[r.step]?.slice(0, 12)}`,
        );
      if (!r.replayed && !r.recovered && r.step !== lastRecorded + 1)
        fail('each step committed once, in order', `client committed step ${r.step} after step ${lastRecorded}`);
      lastRecorded = Math.max(lastRecorded, r.step);
      if (!r.replayed) reported.add(r.step);
      if (r.replayed && armedInReplay.length > 0) {
        const f = armedInReplay.shift()!;
        // not inside the machine's own event: the kill comes a moment later, as a signal from outside would
        clock.setTimeout(() => {
          faultsFired++;
          trace?.push({ t: clock.now(), what: 'fault', fault: f });
          if (f.kind === 'crash') crash(f);
        }, 0);
      }
    });
    a.subscribe({ complete: () => (clientOut = a.getSnapshot().output as ClientOutput) });
    a.start();
    live.set(name, { actor: a, close: tr.close });
  };

  const kill = (name: string) => {
    const x = live.get(name);
    if (!x) return;
    live.delete(name);
    x.close();
    x.actor.stop();
  };
  const restart = (name: string) => {
    restarts++;
    trace?.push({ t: clock.now(), what: 'restart', actor: name });
    if (name === 'client') return startClient(true);
    const parts = name.split('/').map(Number);
    if (name.startsWith('pod/')) return startPod(parts[1], true);
    return startHost(parts[1], parts[2], true);
  };

  /** Kill an actor now; it starts again `downMs` later. */
  const crash = (f: Extract<SimSchedule['faults'][number], { kind: 'crash' }>) => {
    if (!live.has(f.target) || clientOut) return;
    kill(f.target);
    clock.setTimeout(() => restart(f.target), f.downMs);
    faultsEnd = Math.max(faultsEnd, clock.now() + f.downMs);
  };
  // the schedule's faults, each at its time
  net.faults = schedule.net;
  if (schedule.faultsUntilMs > 0) clock.setTimeout(() => (net.faults = noNetFaults), schedule.faultsUntilMs);
  let faultsEnd = schedule.faultsUntilMs;
  for (const f of schedule.faults) {
    const ends = f.at + (f.kind === 'crash' ? f.downMs : f.kind === 'partition' ? f.durationMs : 0);
    faultsEnd = Math.max(faultsEnd, ends);
    clock.setTimeout(() => {
      if (f.kind === 'crash' && f.inReplay) {
        armedInReplay.push(f); // fires at the client's next replayed commit
        return;
      }
      faultsFired++;
      trace?.push({ t: clock.now(), what: 'fault', fault: f });
      if (f.kind === 'crash') crash(f);
      else if (f.kind === 'partition') {
        net.cut = { forward: f.direction !== 'back', back: f.direction !== 'forward' };
        clock.setTimeout(() => (net.cut = { forward: false, back: false }), f.durationMs);
      } else if (f.kind === 'forge') net.forgeNext = true;
      else disk.tear(DIR, t.pods);
    }, f.at);
  }

  // start every actor at time 0 (the machines' own start-up: hosts ping their cross-pod peers, the client waits for ready pods)
  for (let p = 0; p < t.pods; p++) for (let h = 0; h < t.hostsPerPod; h++) startHost(p, h, false);
  for (let p = 0; p < t.pods; p++) startPod(p, false);
  startClient(false);

  // liveness: once the faults stop, the run ends within a bound (every step may need its deadlines and a restore)
  const d = t.deadlines;
  const bound = () => faultsEnd + 2 * d.startupMs + steps * (2 * d.stepMs + d.phaseMs);
  let outcome: SimOutcome | undefined;
  for (;;) {
    if (violation) {
      outcome = { kind: 'violation', invariant: violation.invariant, message: violation.message };
      break;
    }
    if (clientOut) break;
    if (clock.now() > bound()) {
      outcome = {
        kind: 'hang',
        message: `no end ${Math.round(bound() - faultsEnd)} ms of simulated time after the last fault (step ${lastRecorded + 1} of ${steps})`,
      };
      break;
    }
    if (!clock.next()) {
      outcome = { kind: 'hang', message: `nothing left to happen at ${Math.round(clock.now())} ms (step ${lastRecorded + 1} of ${steps})` };
      break;
    }
    if (drain) {
      // a promise actor settled: let its reaction (xstate's done or error event) run before the next timer
      drain = false;
      for (let i = 0; i < 4; i++) await undefined;
    }
  }
  if (!outcome && clientOut) {
    const o: ClientOutput = clientOut;
    if (o.failure) outcome = { kind: 'failed', failure: o.failure.cause.kind, message: describeFailure(o.failure) };
    else if (o.paramsHash !== ref.paramsHash[steps - 1])
      outcome = {
        kind: 'violation',
        invariant: 'bits equal the reference',
        message: `final paramsHash ${o.paramsHash?.slice(0, 12)}, the reference ${ref.paramsHash[steps - 1].slice(0, 12)}`,
      };
    else if (runLog.records.length !== steps)
      outcome = {
        kind: 'violation',
        invariant: 'every step logged once',
        message: `run log holds ${runLog.records.length} records for ${steps} steps`,
      };
    else if (reported.size !== steps)
      outcome = {
        kind: 'violation',
        invariant: 'every step reported committed',
        message: `steps ${Array.from({ length: steps }, (_, s) => s)
          .filter((s) => !reported.has(s))
          .join(', ')} never reported committed, only as replays`,
      };
    else outcome = { kind: 'recovered' };
  }
  for (const name of [...live.keys()]) kill(name);
  const final = outcome ?? { kind: 'hang', message: 'ended without an outcome' };
  const eventsHash = createHash('sha256').update(net.hash.digest('hex')).update(JSON.stringify(final)).digest('hex');
  return {
    seed: schedule.seed,
    outcome: final,
    eventsHash,
    simulatedMs: clock.now(),
    wallMs: performance.now() - began,
    events: clock.fired,
    stepsCommitted: runLog.records.length,
    retried: clientOut?.retried.length ?? 0,
    restarts,
    restores: clientOut?.restores.length ?? 0,
    delivered: net.delivered,
    dropped: net.dropped,
    faultsFired,
    trace,
  };
}

/** `t` with the client keeping `depth` steps in flight (unchanged when undefined). */
export function withDispatchDepth(t: Topology, depth: number | undefined): Topology {
  return depth === undefined || depth === t.dispatch.depth ? t : { ...t, dispatch: { ...t.dispatch, depth } };
}

/** `t` with its in-pod collectives run `inPod` (unchanged when undefined): both give the same bits. */
export function withInPod(t: Topology, inPod: 'direct' | 'chain' | undefined): Topology {
  return inPod === undefined || inPod === t.collectives.inPod ? t : { ...t, collectives: { ...t.collectives, inPod } };
}

/** One line for an outcome. */
export function describeOutcome(o: SimOutcome): string {
  switch (o.kind) {
    case 'recovered':
      return 'recovered';
    case 'failed':
      return `failed (${o.failure}): ${o.message}`;
    case 'violation':
      return `violation of "${o.invariant}": ${o.message}`;
    case 'hang':
      return `hang: ${o.message}`;
  }
}
