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
  type HostDispatch,
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

/**
 * A step this host prepared and reported, awaiting its commit. Prepared steps are kept in step order; the step after
 * the last one computes on its parameters (parallel asynchronous dispatch: it need not wait for the commit).
 */
export interface PreparedStep {
  step: number;
  attempt: number;
  /** The new full parameters, this host's new shard and the shard's optimizer state: adopted on commit. */
  params: Float32Array;
  shard: Float32Array;
  optState: OptimizerState;
  /** The pod's gradient of this host's shard: a cross-pod peer still in this step's exchange may ask for it again. */
  podGrad: Float32Array;
  shardHash: string;
  lossSum: number;
  phaseMs: PhaseTimes;
  waitedMs: number;
  /** When it was prepared (ms on the run's clock): its report is said again every heartbeat interval from then. */
  at: number;
  /**
   * When its commit became the next one due (ms on the run's clock): when it was prepared if no step before it awaited
   * a commit, else when the one before it committed. A commit that has not come `deadlines.stepMs` later fails it: at
   * depth d a step waits behind the d - 1 commits before it, and that wait is not its own (lockstep chaos
   * scenarios/lost-commits.yaml --dispatch-depth 8 failed a logged step on the old clock).
   */
  waitingSince: number;
}

export interface HostContext {
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  me: string;
  incarnation: string;
  task: Task;
  ranges: ShardRange[];
  /** The step being computed (or failed), or the next one to compute when idle. */
  step: number;
  /** The attempt of `step` in flight (or the last one aborted); -1 before the first. */
  attempt: number;
  samples: SampleRange;
  /** Committed full parameters, this host's committed shard and its optimizer state. */
  params: Float32Array;
  optState: OptimizerState;
  /** Steps prepared and reported, awaiting their commits, oldest first; `step` computes on the last one's parameters. */
  pending: PreparedStep[];
  /** Dispatches for steps after `step` (or a later attempt of it), in step order: the pod's gang-scheduling order. */
  queued: HostDispatch[];
  /** When this host last finished a step's work (its all-gather) with nothing to compute next; undefined after a reset. */
  freeSince: number | undefined;
  /** How long the attempt in flight waited for its dispatch after the step before it was prepared. */
  waitedMs: number;
  /** host.prepared reports sent (part of their message ids). */
  reports: number;
  acts: Activations | undefined;
  /** This host's share of the step's loss. */
  lossSum: number;
  grad: Float32Array | undefined;
  /** Pod-local gradient of my shard, after the reduce-scatter. */
  podGrad: Float32Array | undefined;
  /**
   * `chain` collectives: the running sum of hosts 0..this one's gradients (the whole vector), once this host has
   * added its own; the last host's is the pod's sum.
   */
  partial: Float32Array | undefined;
  /** `chain` collectives: the new parameters of shards 0..this host's, once it has appended its own; the last host's is the whole. */
  prefix: Float32Array | undefined;
  /** Received for this attempt: my shard of host k's gradient, pod q's gradient of my shard, host k's new shard. */
  slices: Map<number, Float32Array>;
  exchanged: Map<number, Float32Array>;
  gathered: Map<number, Float32Array>;
  /** Tensors for a later step or attempt that came before its dispatch. */
  early: AssembledTensor[];
  /** The update of the attempt in flight, until it is prepared (then it is a `pending` step). */
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
  /** host.restore messages taken so far (part of the host.restored ids). */
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
  /**
   * The least wall time (ms) each step phase takes (`hostPhaseFloorsMs` of the topology: the cost model's time over
   * `timeScale` with `compute: modeled`); a collective waits for its peers' tensors and for this (`phaseFloor`).
   */
  phaseFloorMs: PhaseTimes;
  /** The phase's least time (`phaseFloorMs`) has passed since it began, as `phaseFloor` said (reset on entering a phase). */
  phaseTimeOver: boolean;
  /** `phaseFloor` waits out the rest of the phase's least time: its tensors were all in before it (reset on entering a phase). */
  phaseFloorWaiting: boolean;
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
  // chain: from the host before (k - 1) and from the last host, never the same host, so one map each holds both
  'grad.partial': 'slices',
  'grad.reduced': 'slices',
  'param.prefix': 'gathered',
  'param.full': 'gathered',
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

const isChain = (ctx: Pick<HostContext, 'topology'>) => ctx.topology.collectives.inPod === 'chain';
const lastHost = (ctx: Pick<HostContext, 'topology'>) => ctx.topology.hostsPerPod - 1;

/** The least wall time (ms) of the phase the host is in: its modeled time with `compute: modeled`, else 0. */
const phaseFloorOf = (ctx: HostContext): number => ctx.phaseFloorMs[ctx.phase as HostPhase] ?? 0;

/** The other hosts of this host's pod. */
const otherHosts = (ctx: HostContext): Peer[] =>
  Array.from({ length: ctx.topology.hostsPerPod }, (_, k) => ({ pod: ctx.pod, host: k })).filter((p) => p.host !== ctx.host);

/**
 * Who this host sends a step tensor to: every other host of its pod (direct: slices, shards; chain: the last host's
 * reduced shards and whole parameters), host h of every other pod (the exchange), the next host (chain: the running
 * sum, the prefix).
 */
function sendsTo(ctx: HostContext, tensor: StepTensor): Peer[] {
  switch (tensor) {
    case 'grad.exchange':
      return replicaPods(ctx).map((q) => ({ pod: q, host: ctx.host }));
    case 'grad.partial':
    case 'param.prefix':
      return ctx.host < lastHost(ctx) ? [{ pod: ctx.pod, host: ctx.host + 1 }] : [];
    case 'grad.reduced':
    case 'param.full':
      return ctx.host === lastHost(ctx) ? otherHosts(ctx) : [];
    default:
      return otherHosts(ctx);
  }
}

/**
 * What this host waits for in a phase that waits for tensors, in the order it needs them: direct, a slice (a new
 * shard) from every other host; chain, the running sum (the prefix) from the host before, then the reduced shard
 * (the whole parameters) from the last host; the exchange, its pod's gradient of shard h from host h of every other pod.
 */
function awaits(ctx: HostContext, phase: string): { tensor: StepTensor; peer: Peer }[] {
  const k = ctx.host;
  const chain = (fromBefore: StepTensor, fromLast: StepTensor) => [
    ...(k > 0 ? [{ tensor: fromBefore, peer: { pod: ctx.pod, host: k - 1 } }] : []),
    ...(k < lastHost(ctx) ? [{ tensor: fromLast, peer: { pod: ctx.pod, host: lastHost(ctx) } }] : []),
  ];
  switch (phase) {
    case 'reduceScatter':
      return isChain(ctx) ? chain('grad.partial', 'grad.reduced') : otherHosts(ctx).map((peer) => ({ tensor: 'grad.slice', peer }));
    case 'exchange':
      return sendsTo(ctx, 'grad.exchange').map((peer) => ({ tensor: 'grad.exchange', peer }));
    case 'allGather':
      return isChain(ctx) ? chain('param.prefix', 'param.full') : otherHosts(ctx).map((peer) => ({ tensor: 'param.shard', peer }));
    default:
      return [];
  }
}

/** Whether this host holds `tensor` of the attempt in flight from `peer`. */
const holds = (ctx: HostContext, tensor: StepTensor, peer: Peer) =>
  ctx[TENSOR_FROM[tensor]!].has(tensor === 'grad.exchange' ? peer.pod : peer.host);

/** Host h of every other pod: the replicas of this host's shard. */
function replicaPods(ctx: HostContext): number[] {
  return Array.from({ length: ctx.topology.pods }, (_, q) => q).filter((q) => q !== ctx.pod);
}

/** What this host waits for in `phase` that has not all come. */
function missing(ctx: HostContext, phase: string): { tensor: StepTensor; peer: Peer }[] {
  return awaits(ctx, phase).filter((w) => !holds(ctx, w.tensor, w.peer));
}

/** What a host sends of one step attempt: the attempt in flight, or a prepared step that awaits its commit. */
type StepWork = {
  step: number;
  attempt: number;
  grad?: Float32Array;
  podGrad?: Float32Array;
  shard?: Float32Array;
  partial?: Float32Array;
  prefix?: Float32Array;
};
const workInFlight = (ctx: HostContext): StepWork => ({
  step: ctx.step,
  attempt: ctx.attempt,
  grad: ctx.grad,
  podGrad: ctx.podGrad,
  shard: ctx.next?.shard,
  partial: ctx.partial,
  prefix: ctx.prefix,
});
/**
 * A prepared step still answers for its exchange and its new shard, or (chain) its prefix and whole parameters: a
 * peer may still wait for them. Its gradient slices (running sums) were all taken before it could prepare.
 */
const preparedWork = (ctx: HostContext, p: PreparedStep): StepWork => ({
  step: p.step,
  attempt: p.attempt,
  podGrad: p.podGrad,
  shard: p.shard,
  // the whole parameters began with this host's prefix (the chain passed it on unchanged)
  prefix: p.params.subarray(0, ctx.ranges[ctx.host].end),
});

/** The `tensor` this host sends peer `to` of `work` (the attempt in flight unless said), once it has it; `round` marks a resend the peer asked for. */
function tensorTo(
  ctx: HostContext,
  tensor: StepTensor,
  to: Peer,
  round?: number,
  work: StepWork = workInFlight(ctx),
): WireCommand | undefined {
  const r = ctx.ranges[to.host];
  const isLast = ctx.host === lastHost(ctx);
  const data = {
    'grad.slice': () => work.grad?.subarray(r.start, r.end),
    'grad.exchange': () => work.podGrad,
    'param.shard': () => work.shard,
    'grad.partial': () => work.partial,
    'grad.reduced': () => (isLast ? work.partial?.subarray(r.start, r.end) : undefined),
    'param.prefix': () => work.prefix,
    'param.full': () => (isLast ? work.prefix : undefined),
  }[tensor]();
  if (!data) return undefined;
  const id = `${tensor}.${tensor === 'grad.exchange' ? to.pod : to.host}${round === undefined ? '' : `.x${round}`}`;
  const { runId, incarnation } = ctx;
  return {
    type: 'wire.sendTensor',
    subject: subjects.hostData(runId, to.pod, to.host, ctx.pod, ctx.host),
    head: {
      ...envelopeFor({ runId, incarnation, step: work.step, attempt: work.attempt }, ctx.me, id),
      tensor,
      shard: tensor === 'grad.slice' || tensor === 'grad.reduced' ? to.host : ctx.host,
    },
    data,
  };
}

/** One wire.sendMany of `ctx`'s `tensor` to every peer that takes it (see sendsTo), or undefined when none does. */
function sendToAll(ctx: HostContext, tensor: StepTensor): WireCommand | undefined {
  const commands = sendsTo(ctx, tensor).map((p) => tensorTo(ctx, tensor, p)!);
  return commands.length > 0 ? { type: 'wire.sendMany', commands } : undefined;
}

/** The step after the last one this host committed: `step` less the prepared steps awaiting commit (`step` = this + pending.length). */
function committedNext(ctx: Pick<HostContext, 'lastCommitted'>): number {
  return ctx.lastCommitted ? ctx.lastCommitted.step + 1 : 0;
}

/** The parameters and optimizer state the step in flight computes on: the last prepared step's, else the committed ones. */
function base(ctx: HostContext): { params: Float32Array; optState: OptimizerState } {
  const p = ctx.pending.at(-1);
  return p ?? { params: ctx.params, optState: ctx.optState };
}

/** The attempt of step `k` this host holds (prepared, in flight or aborted, queued), or -1. */
function attemptHeld(ctx: HostContext, k: number): number {
  const p = ctx.pending.find((x) => x.step === k);
  if (p) return p.attempt;
  const q = ctx.queued.find((x) => x.step === k);
  return Math.max(k === ctx.step ? ctx.attempt : -1, q?.attempt ?? -1);
}

/** The newest attempt this host holds of any step before `k` (prepared, in flight, queued), or -1. */
function attemptHeldBefore(ctx: HostContext, k: number): number {
  let a = -1;
  for (const p of ctx.pending) if (p.step < k) a = Math.max(a, p.attempt);
  for (const q of ctx.queued) if (q.step < k) a = Math.max(a, q.attempt);
  return ctx.step < k ? Math.max(a, ctx.attempt) : a;
}

/**
 * Whether a host takes a dispatch: of a step it has not committed, within `dispatch.depth` steps of its last
 * commit (the client has at most that many in flight, and moves on only once every host committed), newer than any
 * attempt of that step it holds, and not older than what it holds of the steps before (the client numbers attempts
 * so that every dispatch after a retry is newer than everything before it: an older one is a leftover).
 */
function takesDispatch(ctx: HostContext, d: HostDispatch): boolean {
  const from = committedNext(ctx);
  return (
    d.step >= from &&
    d.step < from + ctx.topology.dispatch.depth &&
    d.attempt > attemptHeld(ctx, d.step) &&
    d.attempt >= attemptHeldBefore(ctx, d.step)
  );
}

/**
 * What dropping uncommitted work leaves: the prepared steps from the first one `drops` takes (and every one after it,
 * which computed on it), the queued dispatches it takes, and, if `inFlight`, the attempt in flight. The host then
 * computes from the first step it dropped. Nothing committed is touched.
 */
function dropped(ctx: HostContext, drops: (w: { step: number; attempt: number }) => boolean, inFlight: boolean): Partial<HostContext> {
  const queued = ctx.queued.filter((d) => !drops(d));
  const i = ctx.pending.findIndex(drops);
  if (i >= 0) {
    const from = ctx.pending[i];
    return {
      ...noAttempt(),
      pending: ctx.pending.slice(0, i),
      queued,
      step: from.step,
      attempt: from.attempt,
      failure: undefined,
      freeSince: undefined,
    };
  }
  if (inFlight && drops(ctx)) return { ...noAttempt(), queued, failure: undefined, freeSince: undefined };
  return { queued };
}

/** `queued` with dispatch `d` in its place: one per step, in step order. */
function withQueued(queued: HostDispatch[], d: HostDispatch): HostDispatch[] {
  return [...queued.filter((q) => q.step !== d.step), d].sort((a, b) => a.step - b.step);
}

/** host.prepared for a prepared step; `n` numbers the report (each resend under a new id). */
function preparedReport(ctx: HostContext, p: PreparedStep, n: number): WireCommand {
  const c = { ...ctx, step: p.step, attempt: p.attempt };
  return toPod(c, {
    ...envelope(c, `host.prepared.r${n}`),
    kind: 'host.prepared',
    shardHash: p.shardHash,
    lossSum: p.lossSum,
    phaseMs: p.phaseMs,
    waitedMs: p.waitedMs,
  });
}

/** The deadline of `phase` passed: what this host was waiting for (a peer's tensor, its own computation, the pod's commit), and from whom. */
function deadlineCause(ctx: HostContext, phase: string): CauseOf<'deadline'> {
  const need = awaits(ctx, phase);
  const base = { kind: 'deadline' as const, actor: ctx.me, phase, ms: ctx.topology.deadlines.phaseMs };
  if (need.length > 0) {
    const gone = missing(ctx, phase);
    return {
      ...base,
      waitingFor: (gone[0] ?? need[0]).tensor,
      peers: gone.map((w) => ({ actor: actorNames.host(w.peer.pod, w.peer.host) })),
    };
  }
  if (phase === 'prepared')
    return { ...base, ms: ctx.topology.deadlines.stepMs, waitingFor: 'host.commit', peers: [{ actor: actorNames.pod(ctx.pod) }] };
  return { ...base, waitingFor: 'computation', peers: [] };
}

/** A later step, or a later attempt of the step in flight: what this host has not got to yet. */
const isLater = (ctx: HostContext, w: { step: number; attempt: number }) =>
  w.step > ctx.step || (w.step === ctx.step && w.attempt > ctx.attempt);
/** One of the prepared steps that await their commits (that very attempt). */
const isPrepared = (ctx: HostContext, w: { step: number; attempt: number }) =>
  ctx.pending.some((p) => p.step === w.step && p.attempt === w.attempt);
/** What an abort of (step, attempt) takes: that step and every later one, of that attempt or an older one. */
const abortTakes = (a: { step: number; attempt: number }) => (w: { step: number; attempt: number }) =>
  w.step >= a.step && w.attempt <= a.attempt;

/** The committed state, as a healing peer gets it (never a prepared step: it may yet abort). */
function committedState(ctx: HostContext): CommittedState {
  return { step: committedNext(ctx), params: ctx.params, optState: ctx.optState, lastCommitted: ctx.lastCommitted };
}

/**
 * Everything of the attempt in flight dropped: what preparing it, an abort or a restore leaves behind. Fresh maps
 * each time: an attempt's maps are its own (takeTensors adds to them in place).
 */
const noAttempt = () =>
  ({
    next: undefined,
    grad: undefined,
    podGrad: undefined,
    partial: undefined,
    prefix: undefined,
    acts: undefined,
    slices: new Map(),
    exchanged: new Map(),
    gathered: new Map(),
  }) satisfies Partial<HostContext>;

/** The context of a host that now holds `s` (healed from a peer, or loaded from a checkpoint). */
function adopted(s: CommittedState): Partial<HostContext> {
  return {
    ...noAttempt(),
    step: s.step,
    attempt: -1,
    params: s.params,
    optState: s.optState,
    lastCommitted: s.lastCommitted,
    pending: [],
    queued: [],
    freeSince: undefined,
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
    /**
     * Waits `ms` on the run's clock and says when it ended: the modeled time of a collective phase (see host.actors.ts
     * `hostCompute`). Provided by the adapter.
     */
    phaseFloor: fromPromise<Timed<void>, { ms: number }>(async () => {
      throw new Error('hostMachine: provide the `phaseFloor` actor');
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
    /** A dispatch this host takes (see takesDispatch): it queues it, in step order. */
    takesDispatch: ({ context, event }) => event.type === 'host.dispatch' && takesDispatch(context, event.msg),
    /** A dispatch this host takes that is newer than the attempt in flight or a prepared step: those are leftovers of an aborted attempt. */
    dispatchDropsWork: ({ context, event }) =>
      event.type === 'host.dispatch' &&
      takesDispatch(context, event.msg) &&
      (context.attempt < event.msg.attempt || context.pending.some((p) => p.attempt < event.msg.attempt)),
    /** The next dispatch in the pod's order is here: the step after the last prepared one (or a newer attempt of it). */
    startsQueued: ({ context }) => context.queued[0]?.step === context.step && context.queued[0].attempt > context.attempt,
    forThisAttempt: ({ context, event }) => {
      const s = eventStep(event);
      return s !== undefined && stepMismatch(context, s) === undefined;
    },
    conflictForThisAttempt: ({ context, event }) => event.type === 'tensor.conflict' && stepMismatch(context, event.conflict) === undefined,
    conflictForLater: ({ context, event }) => event.type === 'tensor.conflict' && isLater(context, event.conflict),
    /** A peer asks again for a tensor of a step this host prepared (its exchange, or its new shard). */
    requestForPrepared: ({ context, event }) => event.type === 'tensor.request' && isPrepared(context, event.msg),
    /** The commit of the oldest prepared step: commits are taken in step order only. */
    commitsOldest: ({ context, event }) =>
      event.type === 'host.commit' && context.pending[0]?.step === event.msg.step && context.pending[0].attempt === event.msg.attempt,
    /** The commit of a prepared step that is not the oldest. */
    commitsLaterPrepared: ({ context, event }) => event.type === 'host.commit' && isPrepared(context, event.msg),
    /** The oldest prepared step has waited `deadlines.stepMs` for its commit (by the time a tick carries). */
    commitOverdue: ({ context, event }) =>
      context.pending.length > 0 && timeOf(event, context.now) - context.pending[0].waitingSince > context.topology.deadlines.stepMs,
    /** An abort that takes the attempt in flight (or failed): of its step or an earlier one, of its attempt or a later one. */
    abortDropsInFlight: ({ context, event }) => event.type === 'host.abort' && abortTakes(event.msg)(context),
    /** An abort that takes a prepared step (and every later one with it). */
    abortDropsPrepared: ({ context, event }) => event.type === 'host.abort' && context.pending.some(abortTakes(event.msg)),
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
      ((event.type === 'host.commit' && event.msg.step >= committedNext(context) && !isPrepared(context, event.msg)) ||
        (event.type === 'host.dispatch' && event.msg.committed > (context.pending.at(-1)?.step ?? committedNext(context) - 1))),
    /** An abort of a step this host has not committed, and not older than what it holds of that step: nothing (more) to drop; confirm it. */
    isAbortOfUncommitted: ({ context, event }) =>
      event.type === 'host.abort' && event.msg.step >= committedNext(context) && event.msg.attempt >= attemptHeld(context, event.msg.step),
    /** Every slice is here (direct); this host has added its gradient to the running sum and holds its reduced shard (chain). */
    haveAllSlices: ({ context }) =>
      isChain(context)
        ? context.partial !== undefined && missing(context, 'reduceScatter').length === 0
        : context.slices.size === context.topology.hostsPerPod - 1,
    haveAllExchanged: ({ context }) => context.exchanged.size === context.topology.pods - 1,
    /** Every new shard is here (direct); this host has passed its prefix on and holds the whole parameters (chain). */
    haveAllGathered: ({ context }) =>
      isChain(context)
        ? context.prefix !== undefined && missing(context, 'allGather').length === 0
        : context.gathered.size === context.topology.hostsPerPod - 1,
    /** Chain: this host has not added its gradient to the running sum yet, and the host before's sum is here (host 0: none needed). */
    extendsSum: ({ context }) =>
      isChain(context) && context.partial === undefined && (context.host === 0 || context.slices.has(context.host - 1)),
    /** Chain: this host has not appended its new shard to the prefix yet, and the host before's prefix is here (host 0: none needed). */
    extendsPrefix: ({ context }) =>
      isChain(context) && context.prefix === undefined && (context.host === 0 || context.gathered.has(context.host - 1)),
    /** The phase has lasted its least time (none for this phase, or `phaseFloor` said so). */
    /**
     * The phase has lasted its least time: none for this phase, `phaseFloor` said so, or the time the last event
     * carried is past it (a collective whose tensors come after its modeled time needs no timer).
     */
    phaseTimeOver: ({ context }) =>
      context.phaseTimeOver || !(phaseFloorOf(context) > 0) || context.now - context.phaseStartedAt >= phaseFloorOf(context),
    phaseFloorWaiting: ({ context }) => context.phaseFloorWaiting,
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
    /** Queue a dispatch this host takes, in step order: the pod's gang-scheduling order, whatever order they came in. */
    queueDispatch: assign(({ context, event }) =>
      event.type === 'host.dispatch' ? { queued: withQueued(context.queued, event.msg) } : {},
    ),
    /**
     * A newer attempt came: what this host holds of older attempts (prepared steps, queued dispatches, and, if
     * `inFlight`, the attempt it computes) was aborted.
     */
    dropOlderWork: assign(({ context, event }, params: { inFlight: boolean }) =>
      event.type === 'host.dispatch' ? dropped(context, (w) => w.attempt < event.msg.attempt, params.inFlight) : {},
    ),
    /** Drop what an abort takes: the attempt in flight if `inFlight`, and the prepared steps and queued dispatches of the aborted step and after. */
    dropAborted: assign(({ context, event }, params: { inFlight: boolean }) =>
      event.type === 'host.abort' ? dropped(context, abortTakes(event.msg), params.inFlight) : {},
    ),
    /** Start the next queued dispatch: its tensors that came early are taken; those of later steps or attempts stay held. */
    beginAttempt: assign(({ context, event }) => {
      const [d, ...queued] = context.queued;
      const { step, attempt, samples } = d;
      const fresh = { slices: new Map(), exchanged: new Map(), gathered: new Map() } as Pick<
        HostContext,
        'slices' | 'exchanged' | 'gathered'
      >;
      let rejected = context.rejected;
      const early: AssembledTensor[] = [];
      for (const t of context.early) {
        const field = TENSOR_FROM[t.tensor];
        if (field && t.step === step && t.attempt === attempt) fresh[field].set(peerIndex(t), t.data);
        else if (t.step > step || (t.step === step && t.attempt > attempt)) early.push(t);
        else rejected = countReject(rejected, 'wrong attempt');
      }
      const now = Math.max(context.now, timeOf(event, context.now));
      return {
        ...fresh,
        step,
        attempt,
        samples,
        queued,
        early,
        rejected,
        acts: undefined,
        lossSum: 0,
        grad: undefined,
        podGrad: undefined,
        partial: undefined,
        prefix: undefined,
        next: undefined,
        failure: undefined,
        phaseMs: {},
        requests: 0,
        // the time since the step before was prepared with nothing to compute next: the controller had not sent this yet
        waitedMs: context.freeSince === undefined ? 0 : Math.max(0, now - context.freeSince),
        freeSince: undefined,
      };
    }),
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
    /**
     * Step tensors that came in one burst (`tensors.received`), each taken as the guards would take it alone, in
     * order: in an attempt, one of the attempt in flight is stored (a second copy counted as a duplicate); in an
     * attempt or idle, one of a later step or attempt is held for when its dispatch comes (a few pipelines' worth),
     * a late copy of a prepared step's is counted as a duplicate; anything else (and everything `elsewhere`) is
     * rejected and counted by why it does not fit. A lone `tensor.received` of a step tensor is taken the same way.
     */
    takeTensors: assign(({ context, event }, params: { where: 'attempt' | 'idle' | 'elsewhere' }) => {
      const tensors = event.type === 'tensors.received' ? event.tensors : event.type === 'tensor.received' ? [event.tensor] : [];
      let early: AssembledTensor[] | undefined;
      let rejected = context.rejected;
      let duplicates = context.duplicates;
      const bound = 4 * (context.topology.hostsPerPod + context.topology.pods) * context.topology.dispatch.depth;
      for (const t of tensors) {
        const field = TENSOR_FROM[t.tensor];
        if (!field) {
          rejected = countReject(rejected, `not expected in ${context.phase}`);
          continue;
        }
        if (params.where === 'attempt' && stepMismatch(context, t) === undefined) {
          // the attempt's own maps (made fresh for each attempt), added to in place: copying them for every burst
          // made a pod's reduce-scatter cost hosts cubed
          const from = peerIndex(t);
          if (context[field].has(from)) duplicates++;
          else context[field].set(from, t.data);
          continue;
        }
        if (params.where !== 'elsewhere' && isLater(context, t) && (early ?? context.early).length < bound) {
          early ??= [...context.early];
          early.push(t);
          continue;
        }
        if (params.where !== 'elsewhere' && isPrepared(context, t)) {
          duplicates++;
          continue;
        }
        rejected = countReject(rejected, stepMismatch(context, t) ?? `not expected in ${context.phase}`);
      }
      // the time the burst carries: a collective's least time may be over by then (see the phaseTimeOver guard)
      const now = Math.max(context.now, timeOf(event, context.now));
      return { ...(early ? { early } : {}), rejected, duplicates, now };
    }),
    /**
     * A collective's tensors are all in before its least time (modeled compute): wait out the rest on `phaseFloor`.
     * Only then is the actor spawned: a collective whose tensors come later (a chain's hosts) needs none.
     */
    startPhaseFloor: enqueueActions(({ context, enqueue }) => {
      const ms = phaseFloorOf(context) - (context.now - context.phaseStartedAt);
      if (ms <= 0) return;
      enqueue.spawnChild('phaseFloor', { id: 'phaseFloor', input: { ms } });
      enqueue.assign({ phaseFloorWaiting: true });
    }),
    stopPhaseFloor: enqueueActions(({ context, enqueue }) => {
      if (context.phaseFloorWaiting) enqueue.stopChild('phaseFloor');
    }),
    /** The phase's least time has passed (the `phaseFloor` actor's done event, with when). */
    notePhaseTimeOver: assign(({ context, event }) => ({ phaseTimeOver: true, now: Math.max(context.now, timeOf(event, context.now)) })),
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
      return { phase: params.phase, now, phaseStartedAt: now, phaseMs, slowest, phaseTimeOver: false, phaseFloorWaiting: false };
    }),
    /** Send this attempt's `tensor` to every peer that takes it (slices and shards in the pod, the exchange across pods). */
    sendTensors: enqueueActions(({ context, enqueue }, params: { tensor: StepTensor }) => {
      const cmd = sendToAll(context, params.tensor);
      if (cmd) enqueue.sendTo('wire', cmd);
    }),
    /** Direct collectives: send every other host its slice of the gradient (its new shard). Chain: nothing yet (see extendSum). */
    sendInPod: enqueueActions(({ context, enqueue }, params: { tensor: 'grad.slice' | 'param.shard' }) => {
      const cmd = isChain(context) ? undefined : sendToAll(context, params.tensor);
      if (cmd) enqueue.sendTo('wire', cmd);
    }),
    /**
     * Chain reduce-scatter: add this host's gradient to the running sum of the hosts before it (elementwise in float32,
     * as reduceInOrder adds), and pass it on to the next host; the last host, which now holds the pod's sum, sends
     * every other host its shard of it.
     */
    extendSum: enqueueActions(({ context, enqueue }) => {
      const grad = context.grad!;
      const partial = Float32Array.from(context.host === 0 ? grad : context.slices.get(context.host - 1)!);
      if (context.host > 0) for (let i = 0; i < partial.length; i++) partial[i] += grad[i];
      const c = { ...context, partial };
      const cmd = sendToAll(c, context.host === lastHost(context) ? 'grad.reduced' : 'grad.partial');
      if (cmd) enqueue.sendTo('wire', cmd);
      enqueue.assign({ partial });
    }),
    /**
     * Chain all-gather: append this host's new shard to the prefix of the hosts before it and pass it on; the last
     * host, whose prefix is the whole, sends it to every other host.
     */
    extendPrefix: enqueueActions(({ context, enqueue }) => {
      const r = context.ranges[context.host];
      const prefix = new Float32Array(r.end);
      if (context.host > 0) prefix.set(context.gathered.get(context.host - 1)!, 0);
      prefix.set(context.next!.shard, r.start);
      const c = { ...context, prefix };
      const cmd = sendToAll(c, context.host === lastHost(context) ? 'param.full' : 'param.prefix');
      if (cmd) enqueue.sendTo('wire', cmd);
      enqueue.assign({ prefix });
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
      if (isChain(context)) {
        const podGrad =
          context.host === lastHost(context) ? context.partial!.slice(r.start, r.end) : context.slices.get(lastHost(context))!;
        return { podGrad, acts: undefined };
      }
      const parts = Array.from({ length: context.topology.hostsPerPod }, (_, k) =>
        k === context.host ? context.grad!.subarray(r.start, r.end) : context.slices.get(k)!,
      );
      return { podGrad: reduceInOrder(parts), acts: undefined };
    }),
    assembleParams: assign(({ context }) => {
      if (isChain(context)) {
        const params = context.host === lastHost(context) ? context.prefix! : Float32Array.from(context.gathered.get(lastHost(context))!);
        return { next: { ...context.next!, params } };
      }
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
      const gone = missing(context, context.phase);
      if (gone.length === 0) return;
      const round = context.requests + 1;
      // a chain asks for the first link it lacks only: the last host cannot send its part before the host before did
      for (const { tensor, peer: p } of isChain(context) && context.phase !== 'exchange' ? gone.slice(0, 1) : gone) {
        const message = { ...envelope(context, `tensor.request.${tensor}.r${round}`), kind: 'tensor.request' as const, tensor, round };
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostData(context.runId, p.pod, p.host, context.pod, context.host),
          message,
        } satisfies WireCommand);
      }
      enqueue.assign({ requests: round });
    }),
    /**
     * A peer asks again for what this host sends it in this attempt, or in a prepared step: send it, if this host has
     * got that far (if not, it sends it when it gets there).
     */
    answerRequest: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'tensor.request') return;
      const from = parseSender(event.msg.sender);
      if (from?.role !== 'host') return;
      const p = context.pending.find((x) => x.step === event.msg.step && x.attempt === event.msg.attempt);
      const cmd = tensorTo(context, event.msg.tensor, from, event.msg.round, p ? preparedWork(context, p) : workInFlight(context));
      if (cmd) enqueue.sendTo('wire', cmd);
    }),
    /** The attempt in flight is prepared: it awaits its commit (reported now, and again every heartbeat interval until then). */
    prepare: enqueueActions(({ context, enqueue }) => {
      const next = context.next!;
      const p: PreparedStep = {
        step: context.step,
        attempt: context.attempt,
        params: next.params!,
        shard: next.shard,
        optState: next.optState,
        podGrad: context.podGrad!,
        shardHash: shardHash(next.shard),
        lossSum: context.lossSum,
        phaseMs: context.phaseMs,
        waitedMs: context.waitedMs,
        at: context.now,
        waitingSince: context.now,
      };
      enqueue.sendTo('wire', preparedReport(context, p, context.reports));
      enqueue.assign({ pending: [...context.pending, p], reports: context.reports + 1 });
    }),
    /** On to the step after the one just prepared: it computes on that step's parameters, without waiting for its commit. */
    moveToNextStep: assign(({ context }) => ({ ...noAttempt(), step: context.step + 1, attempt: -1, freeSince: context.now })),
    /** Every heartbeat interval: say again that each prepared step (prepared an interval ago or more) is prepared, until its commit. */
    resendPrepared: enqueueActions(({ context, event, enqueue }) => {
      const now = timeOf(event, context.now);
      const due = context.pending.filter((p) => now - p.at >= context.topology.heartbeat.intervalMs);
      due.forEach((p, i) => {
        enqueue.sendTo('wire', preparedReport(context, p, context.reports + i));
      });
      if (due.length > 0) enqueue.assign({ reports: context.reports + due.length });
    }),
    /** Adopt the oldest prepared step: its parameters and optimizer state are now the committed ones. */
    commitOldest: enqueueActions(({ context, event, enqueue }) => {
      const [p, ...rest] = context.pending;
      const c = { ...context, step: p.step, attempt: p.attempt };
      enqueue.sendTo('wire', toPod(c, { ...envelope(c, 'host.committed'), kind: 'host.committed', shardHash: p.shardHash }));
      // the next prepared step's commit is due from now (its wait behind this one was not its own)
      const now = Math.max(context.now, timeOf(event, context.now));
      const pending = rest.length > 0 ? [{ ...rest[0], waitingSince: now }, ...rest.slice(1)] : rest;
      enqueue.assign({
        pending,
        lastCommitted: { step: p.step, attempt: p.attempt, shardHash: p.shardHash },
        params: p.params,
        optState: p.optState,
      });
    }),
    /** Before `commitOldest`: every `checkpoint.everySteps`-th step, this host's part of its checkpoint (its new shard and optimizer state). */
    writeCheckpoint: enqueueActions(({ context, enqueue }) => {
      const p = context.pending[0];
      if ((p.step + 1) % context.topology.checkpoint.everySteps !== 0) return;
      const { runId, pod, host } = context;
      enqueue.sendTo('disk', {
        type: 'ckpt.writeShard',
        runId,
        step: p.step,
        pod,
        host,
        shard: p.shard,
        opt: p.optState,
      } satisfies HostDiskCommand);
    }),
    /** A resent commit for the step already committed: confirm it again. */
    confirmCommitted: sendTo('wire', ({ context, event }) => {
      const last = context.lastCommitted!;
      const ctx = { ...context, step: last.step, attempt: last.attempt };
      const msgId = event.type === 'host.commit' ? event.msg.msgId : 'again';
      return toPod(ctx, { ...envelope(ctx, `host.committed.${msgId}`), kind: 'host.committed', shardHash: last.shardHash });
    }),
    /**
     * Confirm an abort (after `dropAborted`, or of an attempt this host never started or already left). The aborted
     * attempt is not taken again: a dispatch of it that comes late is refused.
     */
    confirmAborted: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'host.abort') return;
      const { step, attempt, msgId } = event.msg;
      const ctx = { ...context, step, attempt };
      enqueue.sendTo('wire', toPod(ctx, { ...envelope(ctx, `host.aborted.${msgId}`), kind: 'host.aborted' }));
      if (step === context.step) enqueue.assign({ attempt: Math.max(context.attempt, attempt) });
    }),
    /** A phase deadline passed: what the host was waiting for, and from whom. */
    fail: assign(({ context }, params: { phase: string }) => ({ failure: deadlineCause(context, params.phase) })),
    /**
     * The oldest prepared step waited `deadlines.stepMs` for its commit: it fails, with everything after it (the
     * committed state is untouched); the host says so for that step and waits for the pod's abort.
     */
    failOverdueCommit: assign(({ context }) => {
      const p = context.pending[0];
      const rest = dropped(context, (w) => w.step >= p.step, true);
      return { ...rest, step: p.step, attempt: p.attempt, failure: deadlineCause(context, 'prepared') };
    }),
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

export { base, committedNext, committedState, deadlineCause, isStepPhase };
