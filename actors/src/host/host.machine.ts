import { assign, enqueueActions, fromCallback, fromPromise, sendTo, setup } from 'xstate';
import {
  actorNames,
  initOptimizerState,
  initParams,
  reduceInOrder,
  shardHash,
  shardRanges,
  subjects,
  Task,
  type Activations,
  type ControlMessage,
  type HostPhase,
  type OptimizerState,
  type PhaseTimes,
  type SampleRange,
  type ShardRange,
  type Topology,
  type TensorRequest,
  parseSender,
} from '@lockstep/topology';
import { countReject, envelope as envelopeFor, rejection, stepMismatch, type Rejections } from '../rejects.ts';
import type { AssembledTensor } from '../wire/assembler.ts';
import type { WireCommand, WireEvent } from '../wire/edge.ts';
import type { CommittedState } from './heal.ts';
import { applyUpdate, backwardPass, forwardPass } from './host.actors.ts';

/**
 * A host: one replica of the parameters, owner of shard `host` of them.
 *
 * For each step attempt, in order:
 *   forward -> backward -> reduceScatter (in-pod: host h sums shard h of every
 *   host's gradient, host order) -> exchange (cross-pod, 1:1 with host h of every
 *   other pod) -> update (sum pods in pod order, optimizer on the shard) ->
 *   allGather (in-pod: every host gets every new shard) -> prepared (report the
 *   shard hash) -> commit (adopt the new parameters) or abort (keep the old).
 *
 * While it waits for tensors (reduceScatter, exchange, allGather), a host asks
 * each peer whose tensor has not all come to send it again (tensor.request,
 * every `requestDelay`); a peer answers once it has got that far. A lost or
 * corrupt chunk costs a resend, not the attempt.
 *
 * The committed parameters are never touched before commit: the new ones live
 * in `next` until then, so abort simply drops them. Tensors for the attempt in
 * flight are kept whatever phase they arrive in; anything for another step,
 * attempt or phase is rejected and counted, never applied.
 */
export interface HostInput {
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  /** A restarted host starts from the committed state it healed from its cross-pod peer. */
  restored?: CommittedState;
  /** A restarted host that found no replica to heal from: it holds nothing until a checkpoint restore. */
  lost?: boolean;
}

export interface HostContext {
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  me: string;
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
  phase: HostPhase | 'idle' | 'prepared' | 'lost' | 'restoring';
  phaseStartedAt: number;
  phaseMs: PhaseTimes;
  rejected: Rejections;
  duplicates: number;
  /** Faults the seeded fault layer injected into what this actor sent. */
  faultsInjected: number;
  failure: { phase: string; reason: string } | undefined;
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
}

export type HostEvent = WireEvent;

/** Where a step's tensor goes; state tensors (healing) never reach the machine: the edge rejects them. */
const TENSOR_FROM: Record<AssembledTensor['tensor'], 'slices' | 'exchanged' | 'gathered' | undefined> = {
  'grad.slice': 'slices',
  'grad.exchange': 'exchanged',
  'param.shard': 'gathered',
  'state.params': undefined,
  'state.opt': undefined,
};

/** Index of the peer a tensor came from: the pod for an exchange, else the host. */
function peerIndex(t: AssembledTensor): number {
  const [, pod, host] = t.sender.split('/');
  return t.tensor === 'grad.exchange' ? Number(pod) : Number(host);
}

function isComputePhase(phase: HostContext['phase']): phase is HostPhase {
  return phase !== 'idle' && phase !== 'prepared' && phase !== 'lost' && phase !== 'restoring';
}

function eventStep(event: HostEvent): { step: number; attempt: number } | undefined {
  if (event.type === 'tensor.received') return event.tensor;
  if ('msg' in event) return event.msg;
  return undefined;
}

function envelope(ctx: HostContext, kind: string) {
  return envelopeFor(ctx, ctx.me, kind);
}

function toPod(ctx: HostContext, message: ControlMessage): WireCommand {
  return { type: 'wire.send', subject: subjects.podReport(ctx.runId, ctx.pod), message };
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
    subject: subjects.hostData(ctx.runId, to.pod, to.host),
    head: { ...envelope(ctx, id), tensor, shard: tensor === 'grad.slice' ? to.host : ctx.host },
    data,
  };
}

function missing(ctx: HostContext, phase: string): string {
  const tensor = PHASE_TENSOR[phase];
  if (tensor)
    return `no ${tensor} yet from ${missingPeers(ctx, tensor)
      .map((p) => actorNames.host(p.pod, p.host))
      .join(', ')}`;
  return phase === 'prepared' ? 'no commit or abort from the pod' : 'computation did not finish';
}

export const hostMachine = setup({
  types: {
    context: {} as HostContext,
    input: {} as HostInput,
    events: {} as HostEvent,
  },
  actors: {
    /** The NATS edge; provided by the adapter (or a test double that records what is sent). */
    wire: fromCallback<WireCommand>(() => {
      throw new Error('hostMachine: provide the `wire` actor');
    }),
    forwardPass,
    backwardPass,
    applyUpdate,
    /** Read the checkpoint of a step from disk; provided by the adapter. */
    loadCheckpoint: fromPromise<CommittedState, { checkpoint: number }>(async () => {
      throw new Error('hostMachine: provide the `loadCheckpoint` actor');
    }),
  },
  delays: {
    phaseDeadline: ({ context }) => context.topology.deadlines.phaseMs,
    commitDeadline: ({ context }) => context.topology.deadlines.stepMs,
    resendDelay: ({ context }) => context.topology.heartbeat.intervalMs,
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
      const slowest = isComputePhase(context.phase) ? (context.slowest[context.phase] ?? 0) : 0;
      const base =
        (slowest > 0 ? Math.max(heartbeat.intervalMs, 2 * slowest) : deadlines.phaseMs / 4) * 2 ** Math.min(context.requests, 10);
      return Math.max(50, Math.min(deadlines.phaseMs / 4, base));
    },
  },
  guards: {
    isNextDispatch: ({ context, event }) =>
      event.type === 'host.dispatch' && event.msg.step === context.step && event.msg.attempt > context.attempt,
    forThisAttempt: ({ context, event }) => {
      const s = eventStep(event);
      return s !== undefined && stepMismatch(context, s) === undefined;
    },
    tensorForThisAttempt: ({ context, event }) => event.type === 'tensor.received' && stepMismatch(context, event.tensor) === undefined,
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
    isAbortOfThisStep: ({ context, event }) =>
      event.type === 'host.abort' && event.msg.step === context.step && event.msg.attempt >= context.attempt,
    haveAllSlices: ({ context }) => context.slices.size === context.topology.hostsPerPod - 1,
    haveAllExchanged: ({ context }) => context.exchanged.size === context.topology.pods - 1,
    haveAllGathered: ({ context }) => context.gathered.size === context.topology.hostsPerPod - 1,
  },
  actions: {
    /** Count a message that does not belong here; the state is left as it was. */
    reject: assign(({ context, event }) => rejection(context, event as never)),
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
    /** Close the previous phase's clock and open this one's (the pod learns the phase from heartbeats). */
    enterPhase: assign(({ context }, params: { phase: HostContext['phase'] }) => {
      const now = performance.now();
      const phaseMs = { ...context.phaseMs };
      const slowest = { ...context.slowest };
      if (isComputePhase(context.phase)) {
        const took = now - context.phaseStartedAt;
        phaseMs[context.phase] = took;
        slowest[context.phase] = Math.max(took, slowest[context.phase] ?? 0);
      }
      return { phase: params.phase, phaseStartedAt: now, phaseMs, slowest };
    }),
    /** Send this attempt's `tensor` to every peer that takes it (slices and shards in the pod, the exchange across pods). */
    sendTensors: enqueueActions(({ context, enqueue }, params: { tensor: StepTensor }) => {
      for (const p of peersFor(context, params.tensor)) enqueue.sendTo('wire', tensorTo(context, params.tensor, p)!);
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
      context.ranges.forEach((r, k) => params.set(k === context.host ? context.next!.shard : context.gathered.get(k)!, r.start));
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
          subject: subjects.hostData(context.runId, p.pod, p.host),
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
        lastCommitted: { step: context.step, attempt: context.attempt, shardHash: hash },
        params: next.params!,
        optState: next.optState,
        next: undefined,
        step: context.step + 1,
        attempt: -1,
        grad: undefined,
        podGrad: undefined,
        slices: new Map(),
        exchanged: new Map(),
        gathered: new Map(),
      });
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
      enqueue.assign({
        next: undefined,
        grad: undefined,
        podGrad: undefined,
        acts: undefined,
        slices: new Map(),
        exchanged: new Map(),
        gathered: new Map(),
      });
    }),
    fail: assign(({ context }, params: { phase: string; reason?: string }) => ({
      failure: {
        phase: params.phase,
        reason: params.reason ?? `deadline of ${context.topology.deadlines.phaseMs} ms exceeded: ${missing(context, params.phase)}`,
      },
    })),
    failFromError: assign(({ event }, params: { phase: string }) => ({
      failure: {
        phase: params.phase,
        reason: `computation failed: ${(event as unknown as { error?: Error }).error?.message ?? 'unknown error'}`,
      },
    })),
    sendFailed: sendTo('wire', ({ context }) =>
      toPod(context, {
        ...envelope(context, 'host.failed'),
        kind: 'host.failed',
        phase: context.failure!.phase,
        reason: context.failure!.reason,
      }),
    ),
    adoptRestored: assign(({ event }) => {
      const s = (event as unknown as { output: CommittedState }).output;
      return {
        step: s.step,
        attempt: -1,
        params: s.params,
        optState: s.optState,
        lastCommitted: s.lastCommitted,
        next: undefined,
        grad: undefined,
        podGrad: undefined,
        acts: undefined,
        slices: new Map(),
        exchanged: new Map(),
        gathered: new Map(),
        early: [],
        failure: undefined,
      };
    }),
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
  },
}).createMachine({
  id: 'host',
  context: ({ input }) => {
    const t = input.topology;
    const r = input.restored;
    const params = r?.params ?? initParams(t.model, t.training.seed);
    const ranges = shardRanges(params.length, t.hostsPerPod);
    const own = ranges[input.host];
    return {
      topology: t,
      runId: input.runId,
      pod: input.pod,
      host: input.host,
      me: actorNames.host(input.pod, input.host),
      task: new Task(t.model, t.training.seed),
      ranges,
      step: r?.step ?? 0,
      attempt: -1,
      samples: { start: 0, end: 0 },
      params,
      optState: r?.optState ?? initOptimizerState(t.training.optimizer, own.end - own.start),
      acts: undefined,
      lossSum: 0,
      grad: undefined,
      podGrad: undefined,
      slices: new Map(),
      exchanged: new Map(),
      gathered: new Map(),
      early: [],
      next: undefined,
      phase: input.lost ? 'lost' : 'idle',
      phaseStartedAt: 0,
      phaseMs: {},
      rejected: {},
      duplicates: 0,
      faultsInjected: 0,
      failure: undefined,
      lastCommitted: r?.lastCommitted,
      resends: 0,
      requests: 0,
      slowest: {},
      restoreTo: -1,
    };
  },
  invoke: { id: 'wire', src: 'wire' },
  initial: 'start',
  on: {
    'run.end': '.stopped',
    // the whole run rolls back to a checkpoint: whatever this host was doing is dropped (nothing uncommitted survives)
    'host.restore': {
      target: '.restoring',
      actions: assign({ restoreTo: ({ event }) => event.msg.checkpoint, resends: ({ context }) => context.resends + 1 }),
    },
    'wire.faultInjected': { actions: assign({ faultsInjected: ({ context, event }) => context.faultsInjected + event.count }) },
    '*': { actions: 'reject' },
  },
  states: {
    start: { always: [{ guard: ({ context }) => context.phase === 'lost', target: 'lost' }, { target: 'idle' }] },
    /** Restarted with no replica of its shard left anywhere: it waits for the client to restore a checkpoint. */
    lost: { entry: { type: 'enterPhase', params: { phase: 'lost' } } },
    restoring: {
      entry: { type: 'enterPhase', params: { phase: 'restoring' } },
      invoke: {
        src: 'loadCheckpoint',
        input: ({ context }) => ({ checkpoint: context.restoreTo }),
        onDone: { target: 'idle', actions: ['adoptRestored', 'sendRestored'] },
        onError: { target: 'lost', actions: { type: 'failFromError', params: { phase: 'restoring' } } },
      },
    },
    idle: {
      entry: { type: 'enterPhase', params: { phase: 'idle' } },
      on: {
        'host.dispatch': [{ guard: 'isNextDispatch', target: 'attempt', actions: 'beginAttempt' }, { actions: 'reject' }],
        'tensor.received': [{ guard: 'tensorForNextAttempt', actions: 'holdEarly' }, { actions: 'reject' }],
        'host.commit': [{ guard: 'isLastCommitted', actions: 'confirmCommitted' }, { actions: 'reject' }],
        'host.abort': [{ guard: 'isAbortOfThisStep', actions: 'confirmAborted' }, { actions: 'reject' }],
      },
    },
    attempt: {
      initial: 'forward',
      on: {
        // a peer already on the next attempt: keep its tensors for when our dispatch arrives
        'tensor.received': [
          { guard: 'tensorForThisAttempt', actions: 'storeTensor' },
          { guard: 'tensorForNextAttempt', actions: 'holdEarly' },
          { actions: 'reject' },
        ],
        'host.abort': [
          { guard: 'forThisAttempt', target: 'idle', actions: 'abort' },
          { guard: 'isAbortOfThisStep', target: 'idle', actions: 'confirmAborted' },
          { actions: 'reject' },
        ],
        'host.commit': [{ guard: 'isLastCommitted', actions: 'confirmCommitted' }, { actions: 'reject' }],
        'tensor.request': [{ guard: 'forThisAttempt', actions: 'answerRequest' }, { actions: 'reject' }],
        // a later attempt of this step supersedes this one: nothing was committed, so start over
        'host.dispatch': [{ guard: 'isNextDispatch', target: 'attempt', reenter: true, actions: 'beginAttempt' }, { actions: 'reject' }],
      },
      states: {
        forward: {
          entry: { type: 'enterPhase', params: { phase: 'forward' } },
          invoke: {
            src: 'forwardPass',
            input: ({ context: c }) => ({
              model: c.topology.model,
              params: c.params,
              task: c.task,
              step: c.step,
              samples: c.samples,
              globalBatch: c.topology.training.globalBatch,
            }),
            onDone: {
              target: 'backward',
              actions: assign({ acts: ({ event }) => event.output, lossSum: ({ event }) => event.output.lossSum }),
            },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'forward' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'forward' } } } },
        },
        backward: {
          entry: { type: 'enterPhase', params: { phase: 'backward' } },
          invoke: {
            src: 'backwardPass',
            input: ({ context: c }) => ({
              model: c.topology.model,
              params: c.params,
              acts: c.acts!,
              globalBatch: c.topology.training.globalBatch,
            }),
            onDone: {
              target: 'reduceScatter',
              actions: [assign({ grad: ({ event }) => event.output }), { type: 'sendTensors', params: { tensor: 'grad.slice' } }],
            },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'backward' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'backward' } } } },
        },
        reduceScatter: {
          entry: { type: 'enterPhase', params: { phase: 'reduceScatter' } },
          always: { guard: 'haveAllSlices', target: 'exchange', actions: 'reduceInPod' },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'reduceScatter' } } } },
          // a tensor lost on the way is asked for again, not waited for until the deadline
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        exchange: {
          entry: [
            { type: 'enterPhase', params: { phase: 'exchange' } },
            { type: 'sendTensors', params: { tensor: 'grad.exchange' } },
          ],
          always: { guard: 'haveAllExchanged', target: 'update' },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'exchange' } } } },
          // a tensor lost on the way is asked for again, not waited for until the deadline
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        update: {
          entry: { type: 'enterPhase', params: { phase: 'update' } },
          invoke: {
            src: 'applyUpdate',
            input: ({ context: c }) => {
              const own = c.ranges[c.host];
              const podGrads = Array.from({ length: c.topology.pods }, (_, q) => (q === c.pod ? c.podGrad! : c.exchanged.get(q)!));
              return {
                optimizer: c.topology.training.optimizer,
                step: c.step,
                shard: c.params.subarray(own.start, own.end),
                state: c.optState,
                podGrads,
              };
            },
            onDone: {
              target: 'allGather',
              actions: [
                assign({ next: ({ event }) => ({ shard: event.output.params, optState: event.output.state, params: undefined }) }),
                { type: 'sendTensors', params: { tensor: 'param.shard' } },
              ],
            },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'update' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'update' } } } },
        },
        allGather: {
          entry: { type: 'enterPhase', params: { phase: 'allGather' } },
          always: { guard: 'haveAllGathered', target: 'prepared', actions: 'assembleParams' },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'allGather' } } } },
          // a tensor lost on the way is asked for again, not waited for until the deadline
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        prepared: {
          entry: [{ type: 'enterPhase', params: { phase: 'prepared' } }, 'sendPrepared'],
          on: {
            'host.commit': [
              { guard: 'forThisAttempt', target: '#host.idle', actions: 'commit' },
              { guard: 'isLastCommitted', actions: 'confirmCommitted' },
              { actions: 'reject' },
            ],
          },
          after: { commitDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'prepared' } } } },
          // a lost report would stall the step: say it again every heartbeat interval until the pod answers
          initial: 'reported',
          states: { reported: { after: { resendDelay: { target: 'reported', reenter: true, actions: ['countResend', 'sendPrepared'] } } } },
        },
        /** Waits for the pod's abort; the committed parameters are untouched. */
        failed: {
          entry: 'sendFailed',
        },
      },
    },
    /** The run ended: report rejections; the adapter flushes and exits. */
    stopped: { entry: 'sendStopped' },
  },
});
