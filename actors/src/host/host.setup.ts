import { assign, enqueueActions, fromCallback, fromPromise, sendTo, setup } from 'xstate';
import {
  actorNames,
  hostPhases,
  parseSender,
  reduceInOrder,
  shardHash,
  subjects,
  type Activations,
  type CauseOf,
  type ControlMessage,
  type FailureCause,
  type HostPhase,
  type OptimizerState,
  type PhaseTimes,
  type SampleRange,
  type ShardRange,
  type Task,
  type TensorRequest,
  type Topology,
  type UpdateResult,
} from '@lockstep/topology';
import { timeOf, type ClockTick, type Timed } from '../clock.ts';
import { countReject, envelope as envelopeFor, rejection, stepMismatch, type Rejections } from '../rejects.ts';
import type { AssembledTensor } from '../wire/assembler.ts';
import type { WireCommand, WireEvent } from '../wire/edge.ts';
import type { BackwardInput, ForwardInput, UpdateInput } from './host.actors.ts';
import { checkAnswer, freshAnswer, noReplicaLeft, stateAnswer, type CommittedState, type HealAnswer } from './heal.ts';
import { earlyRoundDue, serveVerdict, slotsAnswered, slotsAskedEarly, slotsExpecting, type ServeSlot, type ServeVerdict } from './serve.ts';

export interface HostInput {
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  /** Which life of this host (a restart is a new one): part of every message id. */
  incarnation: string;
  /** A restarted host: heal the committed state from host h of another pod before taking part. */
  heal?: boolean;
  /** The time the host starts at (ms on the run's clock). */
  now?: number;
}

/** Where a host is: a step phase, or outside a step. */
export type HostWhere = HostPhase | 'joining' | 'idle' | 'prepared' | 'healing' | 'lost' | 'restoring' | 'failed' | 'stopped';

export interface HostContext {
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  me: string;
  incarnation: string;
  task: Task;
  ranges: ShardRange[];
  /** The step in flight, or the next one to run when idle. */
  step: number;
  /** The attempt in flight for `step`; -1 before the first. */
  attempt: number;
  samples: SampleRange;
  /** Committed full parameters, this host's committed shard and its optimizer state. */
  params: Float32Array;
  optState: OptimizerState;
  acts: Activations | undefined;
  /** This host's share of the step's loss. */
  lossSum: number;
  grad: Float32Array | undefined;
  /** Pod-local gradient of my shard, after the reduce-scatter. */
  podGrad: Float32Array | undefined;
  /** Received for this attempt: my shard of host k's gradient, pod q's gradient of my shard, host k's new shard. */
  slices: Map<number, Float32Array>;
  exchanged: Map<number, Float32Array>;
  gathered: Map<number, Float32Array>;
  /** Tensors for the next step that came before its dispatch. */
  early: AssembledTensor[];
  /** The update, held until commit. */
  next: { shard: Float32Array; optState: OptimizerState; params: Float32Array | undefined } | undefined;
  phase: HostWhere;
  /** The latest time the host knows of (ms on the run's clock): from the last timed event it took. */
  now: number;
  phaseStartedAt: number;
  phaseMs: PhaseTimes;
  rejected: Rejections;
  duplicates: number;
  /** Faults the seeded fault layer injected into what this actor sent. */
  faultsInjected: number;
  /** Why the attempt failed here, or why healing or a restore ended without a state. */
  failure: FailureCause | undefined;
  /** The last step this host committed: a resent commit for it is answered again, not rejected. */
  lastCommitted: { step: number; attempt: number; shardHash: string } | undefined;
  /** Reports of this attempt resent so far (part of their message ids). */
  resends: number;
  /** Rounds of tensor requests sent in this attempt (part of their message ids, and of the answers'). */
  requests: number;
  /** The longest each phase has taken in this run: a tensor is asked for again only after twice that. */
  slowest: PhaseTimes;
  /** The checkpoint a restore in flight loads (-1: the initial state). */
  restoreTo: number;
  /** Heartbeats sent (part of their message ids). */
  beats: number;
  /** Started again after a crash (it began by healing): a commit for a step its predecessor prepared may come. */
  restarted: boolean;
  /** Healing: state requests sent, each peer pod's answer, and where it came from once healed. */
  heal: { asks: number; answers: Map<number, HealAnswer>; from: string | undefined };
  /** State answers sent (part of their message ids). */
  served: number;
  /** Joining: the other pods whose host h has answered a ping (the route carries both ways). */
  joined: number[];
  /** Pings and pongs sent (part of their message ids). */
  pings: number;
  /** Serving peers' state requests: for each pod, until when its host h may be served, when it last was, its early request (serve.ts). */
  serving: ServeSlot[];
}

/** What the host's `disk` actor is asked: write this host's part of the checkpoint of `step`. */
export type HostDiskCommand = {
  type: 'ckpt.writeShard';
  runId: string;
  step: number;
  pod: number;
  host: number;
  shard: Float32Array;
  opt: Float32Array[];
};

export type HostEvent = WireEvent | ClockTick;

/** Where a step's tensor goes; state tensors (healing) go to `heal`. */
const TENSOR_FROM: Record<AssembledTensor['tensor'], 'slices' | 'exchanged' | 'gathered' | undefined> = {
  'grad.slice': 'slices',
  'grad.exchange': 'exchanged',
  'param.shard': 'gathered',
  'state.params': undefined,
  'state.opt': undefined,
};

/** Index of the peer a tensor came from: the pod for an exchange or a state tensor, else the host. */
function peerIndex(t: AssembledTensor): number {
  const [, pod, host] = t.sender.split('/');
  return t.tensor === 'grad.exchange' || t.tensor.startsWith('state.') ? Number(pod) : Number(host);
}

function isStepPhase(phase: HostWhere): phase is HostPhase {
  return (hostPhases as readonly string[]).includes(phase);
}

function eventStep(event: HostEvent): { step: number; attempt: number } | undefined {
  if (event.type === 'tensor.received') return event.tensor;
  if (event.type === 'tensor.conflict') return event.conflict;
  if ('msg' in event) return event.msg;
  return undefined;
}

function envelope(ctx: HostContext, kind: string) {
  return envelopeFor(ctx, ctx.me, kind);
}

function toPod(ctx: HostContext, message: ControlMessage): WireCommand {
  return { type: 'wire.send', subject: subjects.podReport(ctx.runId, ctx.pod, ctx.host), message };
}

type StepTensor = TensorRequest['tensor'];
type Peer = { pod: number; host: number };

/** The tensor a host waits for in each phase that waits for tensors. */
const PHASE_TENSOR: Partial<Record<string, StepTensor>> = {
  reduceScatter: 'grad.slice',
  exchange: 'grad.exchange',
  allGather: 'param.shard',
};

/** Who this host swaps a step tensor with: the other hosts of its pod (slices, shards), or host h of every other pod (the exchange). */
function peersFor(ctx: HostContext, tensor: StepTensor): Peer[] {
  const { pods, hostsPerPod } = ctx.topology;
  return tensor === 'grad.exchange'
    ? Array.from({ length: pods }, (_, q) => ({ pod: q, host: ctx.host })).filter((p) => p.pod !== ctx.pod)
    : Array.from({ length: hostsPerPod }, (_, k) => ({ pod: ctx.pod, host: k })).filter((p) => p.host !== ctx.host);
}

/** Host h of every other pod: the replicas of this host's shard. */
function replicaPods(ctx: HostContext): number[] {
  return Array.from({ length: ctx.topology.pods }, (_, q) => q).filter((q) => q !== ctx.pod);
}

/** The peers whose `tensor` for this attempt has not all come. */
function missingPeers(ctx: HostContext, tensor: StepTensor): Peer[] {
  const have = ctx[TENSOR_FROM[tensor]!];
  return peersFor(ctx, tensor).filter((p) => !have.has(tensor === 'grad.exchange' ? p.pod : p.host));
}

/** The `tensor` this host sends peer `to` in this attempt, once it has it; `round` marks a resend the peer asked for. */
function tensorTo(ctx: HostContext, tensor: StepTensor, to: Peer, round?: number): WireCommand | undefined {
  const r = ctx.ranges[to.host];
  const data = tensor === 'grad.slice' ? ctx.grad?.subarray(r.start, r.end) : tensor === 'grad.exchange' ? ctx.podGrad : ctx.next?.shard;
  if (!data) return undefined;
  const id = `${tensor}.${tensor === 'grad.exchange' ? to.pod : to.host}${round === undefined ? '' : `.x${round}`}`;
  return {
    type: 'wire.sendTensor',
    subject: subjects.hostData(ctx.runId, to.pod, to.host, ctx.pod, ctx.host),
    head: { ...envelope(ctx, id), tensor, shard: tensor === 'grad.slice' ? to.host : ctx.host },
    data,
  };
}

/** The deadline of `phase` passed: what this host was waiting for (a peer's tensor, its own computation, the pod's commit), and from whom. */
function deadlineCause(ctx: HostContext, phase: string): CauseOf<'deadline'> {
  const tensor = PHASE_TENSOR[phase];
  const base = { kind: 'deadline' as const, actor: ctx.me, phase, ms: ctx.topology.deadlines.phaseMs };
  if (tensor)
    return { ...base, waitingFor: tensor, peers: missingPeers(ctx, tensor).map((p) => ({ actor: actorNames.host(p.pod, p.host) })) };
  if (phase === 'prepared')
    return { ...base, ms: ctx.topology.deadlines.stepMs, waitingFor: 'host.commit', peers: [{ actor: actorNames.pod(ctx.pod) }] };
  return { ...base, waitingFor: 'computation', peers: [] };
}

/** The committed state, as a healing peer gets it. */
function committedState(ctx: HostContext): CommittedState {
  return { step: ctx.step, params: ctx.params, optState: ctx.optState, lastCommitted: ctx.lastCommitted };
}

/** Everything of an attempt dropped: what a commit, an abort or a restore leaves behind. */
const noAttempt = {
  next: undefined,
  grad: undefined,
  podGrad: undefined,
  acts: undefined,
  slices: new Map(),
  exchanged: new Map(),
  gathered: new Map(),
} satisfies Partial<HostContext>;

/** The context of a host that now holds `s` (healed from a peer, or loaded from a checkpoint). */
function adopted(s: CommittedState): Partial<HostContext> {
  return {
    ...noAttempt,
    step: s.step,
    attempt: -1,
    params: s.params,
    optState: s.optState,
    lastCommitted: s.lastCommitted,
    early: [],
    failure: undefined,
  };
}

/** What this host sends a peer that asked for its committed state. */
function answerFor(context: HostContext, req: { pod: number; round: number }): WireCommand[] {
  return stateAnswer(committedState(context), {
    runId: context.runId,
    host: context.host,
    from: context.pod,
    to: req.pod,
    round: req.round,
    envelope: (kind, step, attempt) => envelopeFor({ ...context, step, attempt }, context.me, `${kind}.s${context.served}`),
  });
}

/** The pod of the actor that sent `event` (`host/<p>/<h>` or `pod/<p>`): a ping, a pong, a state request or answer, heal.expect. */
function senderPod(event: { msg: { sender: string } }): number {
  return Number(event.msg.sender.split('/')[1]);
}

/**
 * Phases in which a host holds no committed state to give. Awaiting a commit it gives the committed state (the
 * prepared one is in `next`): if the step then commits, the healed peer gets that commit without having prepared it,
 * and heals again.
 */
const NO_STATE: ReadonlySet<HostWhere> = new Set(['healing', 'lost', 'restoring']);

/** Whether this host holds a committed state to give: not while healing, lost or restoring, nor while a restarted one joins. */
const holdsState = (ctx: HostContext) => !NO_STATE.has(ctx.phase) && !(ctx.phase === 'joining' && ctx.restarted);

/** Whether (and how) this host answers a peer's state request, by its pod's word, the time and what it holds (serve.ts). */
function stateRequestVerdict(context: HostContext, event: HostEvent): ServeVerdict | undefined {
  if (event.type !== 'state.request') return undefined;
  return serveVerdict(context.serving, senderPod(event), event.at, holdsState(context), context.topology);
}

/** The ping subject of host h of pod `q`: pings and pongs between a host and its cross-pod peers. */
function toPeerPing(ctx: HostContext, q: number, message: ControlMessage): WireCommand {
  return { type: 'wire.send', subject: subjects.hostPing(ctx.runId, q, ctx.host, ctx.pod), message };
}

export const hostSetup = setup({
  types: {
    context: {} as HostContext,
    input: {} as HostInput,
    events: {} as HostEvent,
  },
  actors: {
    /** The edge (NATS in a real run, the simulated network in `lockstep sim`); provided by the adapter. */
    wire: fromCallback<WireCommand>(() => {
      throw new Error('hostMachine: provide the `wire` actor');
    }),
    /** Sends `clock.tick` every heartbeat interval (see `ticker`); provided by the adapter. */
    clock: fromCallback<{ type: 'noop' }, { everyMs: number }>(() => {
      throw new Error('hostMachine: provide the `clock` actor');
    }),
    /** Writes checkpoint shards; provided by the adapter (a directory in a real run, a simulated disk in `lockstep sim`). */
    disk: fromCallback<HostDiskCommand>(() => {
      throw new Error('hostMachine: provide the `disk` actor');
    }),
    /** The phases' arithmetic (see host.actors.ts); each says when it finished. Provided by the adapter. */
    forwardPass: fromPromise<Timed<Activations>, ForwardInput>(async () => {
      throw new Error('hostMachine: provide the `forwardPass` actor');
    }),
    backwardPass: fromPromise<Timed<Float32Array>, BackwardInput>(async () => {
      throw new Error('hostMachine: provide the `backwardPass` actor');
    }),
    applyUpdate: fromPromise<Timed<UpdateResult>, UpdateInput>(async () => {
      throw new Error('hostMachine: provide the `applyUpdate` actor');
    }),
    /** Read the checkpoint of a step; provided by the adapter. */
    loadCheckpoint: fromPromise<CommittedState, { checkpoint: number }>(async () => {
      throw new Error('hostMachine: provide the `loadCheckpoint` actor');
    }),
  },
  delays: {
    phaseDeadline: ({ context }) => context.topology.deadlines.phaseMs,
    commitDeadline: ({ context }) => context.topology.deadlines.stepMs,
    startupDeadline: ({ context }) => context.topology.deadlines.startupMs,
    resendDelay: ({ context }) => context.topology.heartbeat.intervalMs,
    /** Pings back off from 25 ms, doubling up to a heartbeat interval: a peer that starts a moment later is reached at once. */
    pingDelay: ({ context }) => Math.min(context.topology.heartbeat.intervalMs, 25 * 2 ** Math.min(context.pings, 10)),
    /**
     * How long a phase waits for a tensor before asking for it (again): twice
     * the phase's slowest so far and at least a heartbeat interval (a quarter
     * of the phase deadline until the phase has been timed once: the first
     * step is the slowest), doubled for each round already asked in this
     * attempt (a slow link is not flooded with copies), at most a quarter of
     * the phase deadline.
     */
    requestDelay: ({ context }) => {
      const { deadlines, heartbeat } = context.topology;
      const slowest = isStepPhase(context.phase) ? (context.slowest[context.phase] ?? 0) : 0;
      const base =
        (slowest > 0 ? Math.max(heartbeat.intervalMs, 2 * slowest) : deadlines.phaseMs / 4) * 2 ** Math.min(context.requests, 10);
      return Math.max(50, Math.min(deadlines.phaseMs / 4, base));
    },
  },
  guards: {
    startsHealing: ({ context }) => context.restarted,
    /** Host h of every other pod has answered a ping. */
    joinedAll: ({ context }) => replicaPods(context).every((q) => context.joined.includes(q)),
    isNextDispatch: ({ context, event }) =>
      event.type === 'host.dispatch' && event.msg.step === context.step && event.msg.attempt > context.attempt,
    forThisAttempt: ({ context, event }) => {
      const s = eventStep(event);
      return s !== undefined && stepMismatch(context, s) === undefined;
    },
    tensorForThisAttempt: ({ context, event }) => event.type === 'tensor.received' && stepMismatch(context, event.tensor) === undefined,
    conflictForThisAttempt: ({ context, event }) => event.type === 'tensor.conflict' && stepMismatch(context, event.conflict) === undefined,
    conflictForNextAttempt: ({ context, event }) =>
      event.type === 'tensor.conflict' && event.conflict.step === context.step && event.conflict.attempt > context.attempt,
    tensorForNextAttempt: ({ context, event }) =>
      event.type === 'tensor.received' &&
      event.tensor.step === context.step &&
      event.tensor.attempt > context.attempt &&
      context.early.length < 4 * (context.topology.hostsPerPod + context.topology.pods),
    isLastCommitted: ({ context, event }) =>
      event.type === 'host.commit' &&
      context.lastCommitted !== undefined &&
      event.msg.step === context.lastCommitted.step &&
      event.msg.attempt === context.lastCommitted.attempt,
    /**
     * A restarted host told of a step past what it holds: to commit the step it is at (its predecessor prepared it;
     * this life holds nothing of it), or to commit or run a later one (it healed from a peer that was behind its own
     * pod). Its peers have moved on: it heals again.
     */
    isPastWhatIHold: ({ context, event }) =>
      context.restarted &&
      ((event.type === 'host.commit' && event.msg.step >= context.step && context.next === undefined) ||
        (event.type === 'host.dispatch' && event.msg.step > context.step)),
    isAbortOfThisStep: ({ context, event }) =>
      event.type === 'host.abort' && event.msg.step === context.step && event.msg.attempt >= context.attempt,
    haveAllSlices: ({ context }) => context.slices.size === context.topology.hostsPerPod - 1,
    haveAllExchanged: ({ context }) => context.exchanged.size === context.topology.pods - 1,
    haveAllGathered: ({ context }) => context.gathered.size === context.topology.hostsPerPod - 1,
    /** This host holds committed state, the asker's pod said it heals, and it was not answered within half an interval. */
    canServeState: ({ context, event }) => stateRequestVerdict(context, event)?.kind === 'state',
    /** This host holds no state to give, and the asker was not answered within half an interval. */
    canSayNone: ({ context, event }) => stateRequestVerdict(context, event)?.kind === 'none',
    /** heal.expect from another pod of this run (the edge lets no other through). */
    isPeerPod: ({ context, event }) =>
      event.type === 'heal.expect' && senderPod(event) !== context.pod && senderPod(event) < context.topology.pods,
    healed: ({ context }) => context.heal.from !== undefined,
    /** Every replica's holder said it has nothing to give (it is healing or lost too). */
    noReplicaLeft: ({ context }) => [...context.heal.answers.values()].every((a) => a.none !== undefined),
  },
  actions: {
    /** Count a message that does not belong here; the state is left as it was. */
    reject: assign(({ context, event }) => rejection(context, event as never)),
    /** Count a message that does not belong here under `reason`; the state is left as it was. */
    rejectAs: assign(({ context }, params: { reason: string }) => ({ rejected: countReject(context.rejected, params.reason) })),
    /** Note the time a tick carries (what xstate's own events, which carry none, fall back to). */
    noteTime: assign(({ context, event }) => ({ now: Math.max(context.now, timeOf(event, context.now)) })),
    countFault: assign(({ context, event }) =>
      event.type === 'wire.faultInjected' ? { faultsInjected: context.faultsInjected + event.count } : {},
    ),
    /**
     * Alive, and where: every heartbeat interval, and on becoming able to take a step (`phase`: where it is going;
     * the pod says it is ready at once). Not on entering a phase: the pod judges a dispatched host as computing.
     */
    sendHeartbeat: enqueueActions(({ context, enqueue }, params?: { phase: HostWhere }) => {
      const phase = params?.phase ?? context.phase;
      enqueue.sendTo('wire', toPod(context, { ...envelope(context, `host.heartbeat.${context.beats}`), kind: 'host.heartbeat', phase }));
      enqueue.assign({ beats: context.beats + 1 });
    }),
    /** Ping host h of every other pod that has not answered yet. */
    sendPings: enqueueActions(({ context, enqueue }) => {
      const waiting = replicaPods(context).filter((q) => !context.joined.includes(q));
      waiting.forEach((q, i) => {
        enqueue.sendTo('wire', toPeerPing(context, q, { ...envelope(context, `ping.${q}.${context.pings + i}`), kind: 'ping' }));
      });
      enqueue.assign({ pings: context.pings + waiting.length });
    }),
    /** Answer a ping from host h of another pod, whatever this host is doing. */
    answerPing: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'ping') return;
      const q = senderPod(event);
      enqueue.sendTo('wire', toPeerPing(context, q, { ...envelope(context, `pong.${q}.${context.pings}`), kind: 'pong' }));
      enqueue.assign({ pings: context.pings + 1 });
    }),
    notePong: assign(({ context, event }) => {
      if (event.type !== 'pong') return {};
      const q = senderPod(event);
      return context.joined.includes(q) || q === context.pod ? {} : { joined: [...context.joined, q] };
    }),
    beginAttempt: assign(({ context, event }) => {
      if (event.type !== 'host.dispatch') return {};
      const { step, attempt, samples } = event.msg;
      const fresh = { slices: new Map(), exchanged: new Map(), gathered: new Map() } as Pick<
        HostContext,
        'slices' | 'exchanged' | 'gathered'
      >;
      let rejected = context.rejected;
      for (const t of context.early) {
        const field = TENSOR_FROM[t.tensor];
        if (field && t.step === step && t.attempt === attempt) fresh[field].set(peerIndex(t), t.data);
        else rejected = countReject(rejected, 'wrong attempt');
      }
      return {
        ...fresh,
        step,
        attempt,
        samples,
        early: [],
        rejected,
        acts: undefined,
        lossSum: 0,
        grad: undefined,
        podGrad: undefined,
        next: undefined,
        failure: undefined,
        phaseMs: {},
        resends: 0,
        requests: 0,
      };
    }),
    countResend: assign(({ context }) => ({ resends: context.resends + 1 })),
    holdEarly: assign(({ context, event }) => (event.type === 'tensor.received' ? { early: [...context.early, event.tensor] } : {})),
    /**
     * The copies of a tensor held for the next attempt differ: the one held is let go (counted). The next
     * attempt asks for it again, and the resend is a conflict again there (see TensorAssembler), failing it.
     */
    dropEarlyCopy: assign(({ context, event }) => {
      if (event.type !== 'tensor.conflict') return {};
      const c = event.conflict;
      const same = (t: AssembledTensor) =>
        t.sender === c.sender && t.step === c.step && t.attempt === c.attempt && t.tensor === c.tensor && t.shard === c.shard;
      return { ...rejection(context, event), early: context.early.filter((t) => !same(t)) };
    }),
    storeTensor: assign(({ context, event }) => {
      if (event.type !== 'tensor.received') return {};
      const field = TENSOR_FROM[event.tensor.tensor];
      if (!field) return { rejected: countReject(context.rejected, 'wrong subject') };
      const from = peerIndex(event.tensor);
      if (context[field].has(from)) return { duplicates: context.duplicates + 1 };
      const map = new Map(context[field]);
      map.set(from, event.tensor.data);
      return { [field]: map };
    }),
    /** Close the previous phase's clock and open this one's, at the time the event that moved the host carries. */
    enterPhase: assign(({ context, event }, params: { phase: HostWhere }) => {
      const now = Math.max(context.now, timeOf(event, context.now));
      const phaseMs = { ...context.phaseMs };
      const slowest = { ...context.slowest };
      if (isStepPhase(context.phase)) {
        const took = now - context.phaseStartedAt;
        phaseMs[context.phase] = took;
        slowest[context.phase] = Math.max(took, slowest[context.phase] ?? 0);
      }
      return { phase: params.phase, now, phaseStartedAt: now, phaseMs, slowest };
    }),
    /** Send this attempt's `tensor` to every peer that takes it (slices and shards in the pod, the exchange across pods). */
    sendTensors: enqueueActions(({ context, enqueue }, params: { tensor: StepTensor }) => {
      for (const p of peersFor(context, params.tensor)) enqueue.sendTo('wire', tensorTo(context, params.tensor, p)!);
    }),
    storeActivations: assign(({ event }) => {
      const out = (event as unknown as { output: Timed<Activations> }).output.value;
      return { acts: out, lossSum: out.lossSum };
    }),
    storeGradient: assign(({ event }) => ({ grad: (event as unknown as { output: Timed<Float32Array> }).output.value })),
    storeUpdate: assign(({ event }) => {
      const out = (event as unknown as { output: Timed<UpdateResult> }).output.value;
      return { next: { shard: out.params, optState: out.state, params: undefined } };
    }),
    reduceInPod: assign(({ context }) => {
      const r = context.ranges[context.host];
      const parts = Array.from({ length: context.topology.hostsPerPod }, (_, k) =>
        k === context.host ? context.grad!.subarray(r.start, r.end) : context.slices.get(k)!,
      );
      return { podGrad: reduceInOrder(parts), acts: undefined };
    }),
    assembleParams: assign(({ context }) => {
      const params = new Float32Array(context.params.length);
      context.ranges.forEach((r, k) => {
        params.set(k === context.host ? context.next!.shard : context.gathered.get(k)!, r.start);
      });
      return { next: { ...context.next!, params } };
    }),
    /**
     * Ask each peer whose tensor for this phase has not all come to send it
     * again (a chunk was lost, or corrupt and rejected). Cheaper than failing
     * the attempt at the phase deadline and running the step again.
     */
    requestMissing: enqueueActions(({ context, enqueue }) => {
      const tensor = PHASE_TENSOR[context.phase];
      if (!tensor) return;
      const round = context.requests + 1;
      for (const p of missingPeers(context, tensor)) {
        const message = { ...envelope(context, `tensor.request.${tensor}.r${round}`), kind: 'tensor.request' as const, tensor, round };
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostData(context.runId, p.pod, p.host, context.pod, context.host),
          message,
        } satisfies WireCommand);
      }
      enqueue.assign({ requests: round });
    }),
    /** A peer asks again for what this host sends it in this attempt: send it, if this host has got that far (if not, it sends it when it gets there). */
    answerRequest: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'tensor.request') return;
      const from = parseSender(event.msg.sender);
      if (from?.role !== 'host') return;
      const cmd = tensorTo(context, event.msg.tensor, from, event.msg.round);
      if (cmd) enqueue.sendTo('wire', cmd);
    }),
    sendPrepared: sendTo('wire', ({ context }) =>
      toPod(context, {
        ...envelope(context, `host.prepared.r${context.resends}`),
        kind: 'host.prepared',
        shardHash: shardHash(context.next!.shard),
        lossSum: context.lossSum,
        phaseMs: context.phaseMs,
      }),
    ),
    commit: enqueueActions(({ context, enqueue }) => {
      const next = context.next!;
      const hash = shardHash(next.shard);
      enqueue.sendTo('wire', toPod(context, { ...envelope(context, 'host.committed'), kind: 'host.committed', shardHash: hash }));
      enqueue.assign({
        ...noAttempt,
        lastCommitted: { step: context.step, attempt: context.attempt, shardHash: hash },
        params: next.params!,
        optState: next.optState,
        step: context.step + 1,
        attempt: -1,
      });
    }),
    /** Before `commit`: every `checkpoint.everySteps`-th step, this host's part of its checkpoint (its new shard and optimizer state). */
    writeCheckpoint: enqueueActions(({ context, enqueue }) => {
      if ((context.step + 1) % context.topology.checkpoint.everySteps !== 0) return;
      const { runId, step, pod, host } = context;
      enqueue.sendTo('disk', {
        type: 'ckpt.writeShard',
        runId,
        step,
        pod,
        host,
        shard: context.next!.shard,
        opt: context.next!.optState,
      } satisfies HostDiskCommand);
    }),
    /** A resent commit for the step already committed: confirm it again. */
    confirmCommitted: sendTo('wire', ({ context, event }) => {
      const last = context.lastCommitted!;
      const ctx = { ...context, step: last.step, attempt: last.attempt };
      const msgId = event.type === 'host.commit' ? event.msg.msgId : 'again';
      return toPod(ctx, { ...envelope(ctx, `host.committed.${msgId}`), kind: 'host.committed', shardHash: last.shardHash });
    }),
    /** An abort of an attempt this host never started or already left: nothing to undo; confirm it. */
    confirmAborted: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'host.abort') return;
      const ctx = { ...context, attempt: event.msg.attempt };
      enqueue.sendTo('wire', toPod(ctx, { ...envelope(ctx, `host.aborted.${event.msg.msgId}`), kind: 'host.aborted' }));
      enqueue.assign({ attempt: event.msg.attempt });
    }),
    abort: enqueueActions(({ context, enqueue }) => {
      enqueue.sendTo('wire', toPod(context, { ...envelope(context, 'host.aborted'), kind: 'host.aborted' }));
      enqueue.assign(noAttempt);
    }),
    /** A phase deadline passed: what the host was waiting for, and from whom. */
    fail: assign(({ context }, params: { phase: string }) => ({ failure: deadlineCause(context, params.phase) })),
    failFromError: assign(({ context, event }, params: { phase: string }) => {
      const message = (event as unknown as { error?: Error }).error?.message ?? 'unknown error';
      const failure: FailureCause =
        params.phase === 'restoring'
          ? { kind: 'restore', checkpoint: context.restoreTo, problem: 'unreadable', actor: context.me, detail: message.slice(0, 1000) }
          : { kind: 'computeError', actor: context.me, phase: params.phase, message: message.slice(0, 1000) };
      return { failure };
    }),
    /** Two copies of a tensor of this attempt differ (counted): which one is forged cannot be told, so the attempt fails, named. */
    failConflict: assign(({ context, event }) => {
      if (event.type !== 'tensor.conflict') return {};
      const { sender, tensor, shard, chunk } = event.conflict;
      const failure: FailureCause = { kind: 'tensorConflict', actor: context.me, sender, tensor, shard, chunk };
      return { ...rejection(context, event), failure };
    }),
    sendFailed: sendTo('wire', ({ context }) =>
      toPod(context, { ...envelope(context, 'host.failed'), kind: 'host.failed', cause: context.failure! }),
    ),
    /** The committed state loaded from a checkpoint. */
    adoptLoaded: assign(({ event }) => adopted((event as unknown as { output: CommittedState }).output)),
    sendRestored: sendTo('wire', ({ context }) => {
      const own = context.ranges[context.host];
      return toPod(context, {
        ...envelope(context, `host.restored.${context.restoreTo}.r${context.resends}`),
        kind: 'host.restored',
        checkpoint: context.restoreTo,
        shardHash: shardHash(context.params.subarray(own.start, own.end)),
      });
    }),
    sendStopped: sendTo('wire', ({ context }) =>
      toPod(context, {
        ...envelope(context, 'host.stopped'),
        kind: 'host.stopped',
        rejected: context.rejected,
        duplicates: context.duplicates,
        faultsInjected: context.faultsInjected,
      }),
    ),

    // ---- healing: this host asks for the committed state ----
    /** A (new) heal: fresh answers from every peer, under request rounds past any used before (a peer's earlier answers are not taken for these). */
    beginHealing: assign(({ context }) => {
      const last = Math.max(0, ...[...context.heal.answers.values()].map((a) => a.round));
      return { heal: { ...context.heal, from: undefined, answers: new Map(replicaPods(context).map((q) => [q, freshAnswer(last + 1)])) } };
    }),
    /** Ask host h of every other pod that has not said "none" for its committed state (again). */
    askForState: enqueueActions(({ context, enqueue }) => {
      const answers = new Map(context.heal.answers);
      for (const q of replicaPods(context)) {
        const prev = answers.get(q) ?? freshAnswer(1);
        if (prev.none !== undefined) continue;
        // a state.done comes after its tensors (one sender, one subject): done but incomplete means chunks were lost
        const a = prev.done ? freshAnswer(prev.round + 1) : prev;
        answers.set(q, a);
        const ctx = { ...context, step: 0, attempt: a.round };
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostState(context.runId, q, context.host, context.pod),
          message: { ...envelope(ctx, `state.request.${q}.a${context.heal.asks}`), kind: 'state.request', reqId: `r${a.round}` },
        } satisfies WireCommand);
      }
      enqueue.assign({ heal: { ...context.heal, asks: context.heal.asks + 1, answers } });
    }),
    /** A part of a peer's answer: a state tensor, its state.done, or its state.none; a complete answer that checks out heals this host. */
    storeAnswer: enqueueActions(({ context, event, enqueue }) => {
      let q: number;
      let round: number;
      if (event.type === 'tensor.received') [q, round] = [peerIndex(event.tensor), event.tensor.attempt];
      else if (event.type === 'state.done' || event.type === 'state.none') [q, round] = [senderPod(event), event.msg.attempt];
      else return;
      const prev = context.heal.answers.get(q);
      if (!prev || prev.round !== round) return void enqueue.assign({ rejected: countReject(context.rejected, 'stale state answer') });
      const a: HealAnswer = { ...prev, tensors: new Map(prev.tensors) };
      if (event.type === 'tensor.received') a.tensors.set(`${event.tensor.tensor}/${event.tensor.shard}`, event.tensor.data);
      else if (event.type === 'state.done') a.done = event.msg;
      else if (event.type === 'state.none') a.none = event.msg.reason;
      const answers = new Map(context.heal.answers).set(q, a);
      const checked = checkAnswer(a, context.ranges[context.host]);
      if (checked && 'state' in checked) {
        enqueue.assign({ ...adopted(checked.state), heal: { ...context.heal, answers, from: actorNames.host(q, context.host) } });
        return;
      }
      // a bad answer is asked for again (a new round) at the next ask
      if (checked && 'bad' in checked) answers.set(q, { ...a, done: a.done, tensors: new Map() });
      enqueue.assign({ heal: { ...context.heal, answers } });
    }),
    /** Healing ends without a state: in each peer's own word when none holds a replica, else that none delivered it in time. */
    failHealing: assign(({ context }) => {
      const answers = context.heal.answers;
      const noneLeft = [...answers.values()].every((a) => a.none !== undefined);
      const failure: FailureCause = noneLeft
        ? noReplicaLeft(context.pod, context.host, answers)
        : {
            kind: 'deadline',
            actor: context.me,
            phase: 'healing',
            ms: context.topology.deadlines.startupMs,
            waitingFor: 'state.done',
            peers: [...answers].filter(([, a]) => a.none === undefined).map(([q]) => ({ actor: actorNames.host(q, context.host) })),
          };
      return { failure };
    }),

    // ---- healing: this host gives its committed state to a peer that asks (serve.ts: to whom, and how often) ----
    /** The pod of host h of another pod says that host heals: it may be served for a while (`heartbeat.misses` intervals). */
    expectHeal: assign(({ context, event }) =>
      event.type === 'heal.expect' ? { serving: slotsExpecting(context.serving, senderPod(event), event.at, context.topology) } : {},
    ),
    serveState: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'state.request') return;
      const pod = senderPod(event);
      for (const c of answerFor(context, { pod, round: event.msg.attempt })) enqueue.sendTo('wire', c);
      enqueue.assign({ served: context.served + 1, serving: slotsAnswered(context.serving, pod, event.at) });
    }),
    /** With the word that a peer heals: answer the request it made just before (it asks at once; the word goes through its pod). */
    serveEarlyAsk: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'heal.expect' || !holdsState(context)) return;
      const pod = senderPod(event);
      const round = earlyRoundDue(context.serving, pod, event.at, context.topology);
      if (round === undefined) return;
      for (const c of answerFor(context, { pod, round })) enqueue.sendTo('wire', c);
      enqueue.assign({ served: context.served + 1, serving: slotsAnswered(context.serving, pod, event.at) });
    }),
    sendStateNone: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'state.request') return;
      const q = senderPod(event);
      const ctx = { ...context, step: 0, attempt: event.msg.attempt };
      const why =
        context.phase === 'healing' || context.phase === 'joining'
          ? 'healing itself (restarted, no state yet)'
          : `${context.phase} (no replica was left to heal from)`;
      enqueue.sendTo('wire', {
        type: 'wire.send',
        subject: subjects.hostHeal(context.runId, q, context.host, context.pod),
        message: { ...envelope(ctx, `state.none.to${q}.s${context.served}`), kind: 'state.none', reqId: event.msg.reqId, reason: why },
      } satisfies WireCommand);
      enqueue.assign({ served: context.served + 1, serving: slotsAnswered(context.serving, q, event.at) });
    }),
    /** A state request this host does not answer: the asker's pod never said it heals (or that lapsed), or it came too soon. */
    rejectStateRequest: assign(({ context, event }) => {
      const v = stateRequestVerdict(context, event);
      return { rejected: countReject(context.rejected, v?.kind === 'reject' ? v.reason : 'state request not expected') };
    }),
    /** A state request that came before the asker's pod said it heals: kept (one per pod), answered if the word comes soon. */
    noteEarlyAsk: assign(({ context, event }) => {
      if (event.type !== 'state.request') return {};
      const v = stateRequestVerdict(context, event);
      if (v?.kind !== 'reject' || v.reason !== 'state request not expected') return {};
      return { serving: slotsAskedEarly(context.serving, senderPod(event), event.msg.attempt, event.at) };
    }),
  },
});

export { committedState, deadlineCause, isStepPhase };
