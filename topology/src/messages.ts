import { z } from 'zod';
import { ActorName, FailureCause } from './failure.ts';

/**
 * Every message on the wire. Control messages are JSON; tensor chunks are
 * binary frames whose header is `TensorChunkHeader` (see frame.ts). Types are
 * inferred from these schemas and never written twice. Where each travels,
 * who sends it and what a repeat does is in the wire table (wire.ts).
 */

const count = z.number().int().min(0);
export const RunId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be 1-63 lowercase letters, digits or dashes');
export const Sender = ActorName;
export const Hash = z.string().regex(/^[0-9a-f]{64}$/, 'must be a hex SHA-256');

export const Envelope = z.object({
  v: z.literal(1),
  runId: RunId,
  step: count,
  attempt: count,
  sender: Sender,
  msgId: z.string().min(1).max(200),
});
export type Envelope = z.infer<typeof Envelope>;

export const SampleRangeSchema = z
  .object({ start: count, end: count })
  .refine((r) => r.end >= r.start, { message: 'end must be >= start' });

/** The phases a host goes through for one step attempt, in order. */
export const HostPhase = z.enum(['forward', 'backward', 'reduceScatter', 'exchange', 'update', 'allGather']);
export type HostPhase = z.infer<typeof HostPhase>;
export const hostPhases = HostPhase.options;
/** The phases that compute on a host's only thread (its heartbeats pause there, for up to a phase deadline). */
export const computePhases: readonly HostPhase[] = ['forward', 'backward', 'update'];
export const isComputePhase = (phase: string): boolean => (computePhases as readonly string[]).includes(phase);

/** Milliseconds spent in each phase. */
export const PhaseTimes = z.partialRecord(HostPhase, z.number().min(0));
export type PhaseTimes = z.infer<typeof PhaseTimes>;

/** Messages rejected, by reason. */
export const RejectCounts = z.record(z.string().max(200), count);
export type RejectCounts = z.infer<typeof RejectCounts>;

const msg = <K extends string, S extends z.ZodRawShape>(kind: K, shape: S) => Envelope.extend({ kind: z.literal(kind), ...shape }).strict();

/** The last step the sender knows committed (-1: none) when it dispatches: a host that holds less is behind. */
const committedStep = z.number().int().min(-1);
/** How long a host had nothing to compute before it started this step (the controller had not sent it yet), ms. */
const waitedMs = z.number().min(0);

// client -> pod
export const StepDispatch = msg('step.dispatch', { samples: SampleRangeSchema, committed: committedStep });
export const StepCommit = msg('step.commit', {});
export const StepAbort = msg('step.abort', { reason: z.string().max(1000) });
export const RunEnd = msg('run.end', {});
/** Every replica of some shard is gone: roll every host back to the checkpoint of step `step` (-1: the initial parameters). The envelope's step is 0. */
export const RunRestore = msg('run.restore', { checkpoint: z.number().int().min(-1), paramsHash: Hash.nullable() });
// pod -> host
export const HostDispatch = msg('host.dispatch', { samples: SampleRangeSchema, committed: committedStep });
export const HostCommit = msg('host.commit', {});
export const HostAbort = msg('host.abort', { reason: z.string().max(1000) });
export const HostRestore = msg('host.restore', { checkpoint: z.number().int().min(-1) });
// host -> pod
/** Every `heartbeat.intervalMs`: alive, and where (a phase, or idle, prepared, failed). */
export const HostHeartbeat = msg('host.heartbeat', { phase: z.string().max(40) });
export const HostPrepared = msg('host.prepared', { shardHash: Hash, lossSum: z.number(), phaseMs: PhaseTimes, waitedMs });
export const HostCommitted = msg('host.committed', { shardHash: Hash });
export const HostAborted = msg('host.aborted', {});
/** The attempt failed on this host: the typed cause (a deadline, a computation error). */
export const HostFailed = msg('host.failed', { cause: FailureCause });
export const HostRestored = msg('host.restored', { checkpoint: z.number().int().min(-1), shardHash: Hash });
export const HostStopped = msg('host.stopped', { rejected: RejectCounts, duplicates: count, faultsInjected: count });
// pod -> client
export const PodPrepared = msg('pod.prepared', {
  paramsHash: Hash,
  shardHashes: z.array(Hash),
  lossSum: z.number(),
  /** Slowest host's time in each phase. */
  phaseMs: PhaseTimes,
  /** Mean over the pod's hosts of how long each waited for this step's dispatch. */
  waitedMs,
});
export const PodCommitted = msg('pod.committed', { paramsHash: Hash });
export const PodAborted = msg('pod.aborted', {});
export const PodRestored = msg('pod.restored', { checkpoint: z.number().int().min(-1), paramsHash: Hash });
/** The attempt failed in this pod: the cause a host reported (`host` >= 0), or the pod's own (`host` -1: a silent or restarted host, a deadline). */
export const PodFailed = msg('pod.failed', { host: z.number().int().min(-1), cause: FailureCause });
/** Every `heartbeat.intervalMs`: the pod scheduler is alive, and in which phase. */
export const PodHeartbeat = msg('pod.heartbeat', {
  phase: z.string().max(40),
  /** Every host of the pod heard from lately and holding parameters: a step dispatched now can run. */
  ready: z.boolean(),
  /** Hosts not heard from lately (dead, stalled, or healing after a restart). */
  silentHosts: z.array(z.number().int().min(0)).max(4096).default([]),
  /** Hosts restarted with no replica of their shard left to heal from: only a checkpoint restore brings them back. */
  lostHosts: z.array(z.number().int().min(0)).max(4096).default([]),
});
export const PodStopped = msg('pod.stopped', { rejected: RejectCounts, duplicates: count, faultsInjected: count });
// healing: a pod tells host h of every other pod that its own host h heals, so that one may serve it (pod -> host)
/** "My host h (of the pod that sends this) is healing": host h of another pod may serve it its state, for a while. */
export const HealExpect = msg('heal.expect', {});
// healing: a restarted host asks host h of another pod for its committed state (host -> host)
export const StateRequest = msg('state.request', { reqId: z.string().min(1).max(100) });
/** The committed state follows as state.params and state.opt tensors; this closes it. */
export const StateDone = msg('state.done', {
  reqId: z.string().min(1).max(100),
  lastCommitted: z.object({ step: count, attempt: count, shardHash: Hash }).strict().nullable(),
  optTensors: count,
  /** SHA-256 over the params bytes, then every optimizer tensor's bytes. */
  sha256: Hash,
});
/** The peer holds no state it can give (it is healing too). */
export const StateNone = msg('state.none', { reqId: z.string().min(1).max(100), reason: z.string().max(500) });
/**
 * The tensors hosts send each other in a step: `direct` in-pod collectives grad.slice, param.shard; `chain`
 * grad.partial, grad.reduced, param.prefix, param.full; either grad.exchange.
 */
export const StepTensorKind = z.enum([
  'grad.slice',
  'grad.exchange',
  'param.shard',
  'grad.partial',
  'grad.reduced',
  'param.prefix',
  'param.full',
]);
export type StepTensorKind = z.infer<typeof StepTensorKind>;

// readiness: a host and its cross-pod peers
/**
 * host -> host, on the peer's data subject: "the tensor you send me for this
 * attempt has not all come; send it again". `round` counts the asker's
 * requests in the attempt, so each resend has its own message ids (and its own
 * draw in a fault plan).
 */
export const TensorRequest = msg('tensor.request', {
  tensor: StepTensorKind,
  round: z.number().int().min(1).max(1_000_000),
});

/** A host's start-up ping to host h of another pod, until it answers: the route carries both ways. */
export const Ping = msg('ping', {});
export const Pong = msg('pong', {});
/** The client's record of a committed step, published for observers. */
export const StepCommitted = msg('step.committed', {
  loss: z.number(),
  paramsHash: Hash,
  podsAgree: z.boolean(),
  ms: z.number().min(0),
});

// The ControlMessage union of these schemas, ControlKind and MessageOf are derived from the wire table (wire.ts).

export type StepDispatch = z.infer<typeof StepDispatch>;
export type StepCommit = z.infer<typeof StepCommit>;
export type StepAbort = z.infer<typeof StepAbort>;
export type RunEnd = z.infer<typeof RunEnd>;
export type HostDispatch = z.infer<typeof HostDispatch>;
export type HostCommit = z.infer<typeof HostCommit>;
export type HostAbort = z.infer<typeof HostAbort>;
export type HostHeartbeat = z.infer<typeof HostHeartbeat>;
export type HostPrepared = z.infer<typeof HostPrepared>;
export type HostCommitted = z.infer<typeof HostCommitted>;
export type HostAborted = z.infer<typeof HostAborted>;
export type HostFailed = z.infer<typeof HostFailed>;
export type HostStopped = z.infer<typeof HostStopped>;
export type PodPrepared = z.infer<typeof PodPrepared>;
export type PodCommitted = z.infer<typeof PodCommitted>;
export type PodAborted = z.infer<typeof PodAborted>;
export type PodFailed = z.infer<typeof PodFailed>;
export type PodStopped = z.infer<typeof PodStopped>;
export type PodHeartbeat = z.infer<typeof PodHeartbeat>;
export type Ping = z.infer<typeof Ping>;
export type Pong = z.infer<typeof Pong>;
export type StepCommitted = z.infer<typeof StepCommitted>;
export type HealExpect = z.infer<typeof HealExpect>;
export type StateRequest = z.infer<typeof StateRequest>;
export type StateDone = z.infer<typeof StateDone>;
export type StateNone = z.infer<typeof StateNone>;
export type TensorRequest = z.infer<typeof TensorRequest>;

/** The step tensors, and the two a healing host receives (full parameters, optimizer state). */
export const TensorKind = z.enum([...StepTensorKind.options, 'state.params', 'state.opt']);
export type TensorKind = z.infer<typeof TensorKind>;

export const TensorChunkHeader = Envelope.extend({
  kind: z.literal('tensor.chunk'),
  tensor: TensorKind,
  /** Which shard of the flat parameter vector this tensor covers. */
  shard: count,
  index: count,
  count: z.number().int().min(1),
  /** Element offset of this chunk within the tensor, and its element count. */
  offset: count,
  length: count,
  /** Elements in the whole tensor. */
  total: count,
  /** CRC-32 of this chunk's bytes. */
  crc32: z.number().int().min(0).max(0xffffffff),
})
  .strict()
  .refine((h) => h.index < h.count, { message: 'index must be < count', path: ['index'] })
  .refine((h) => h.offset + h.length <= h.total, { message: 'offset + length must be <= total', path: ['length'] });
export type TensorChunkHeader = z.infer<typeof TensorChunkHeader>;
