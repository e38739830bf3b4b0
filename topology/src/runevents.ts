import { z } from 'zod';
import { FailureReport } from './failure.ts';
import { Hash, HostPhase, PhaseTimes, RejectCounts } from './messages.ts';

/**
 * What a run records as it goes: one typed event each, from the process that
 * knows it (a host's phase slices and tensor flows from its adapter, retried
 * attempts and restores from the client's, exits and restarts from the
 * launcher's supervisor, faults from the chaos runner). The launcher writes
 * them to the run directory (`events.jsonl`, `trace.json`, `steps.jsonl`);
 * a live view can take the same stream. Every time is epoch microseconds on
 * the machine's wall clock (`performance.timeOrigin + performance.now()`), so
 * the processes of a run line up.
 */

/** Epoch microseconds. */
export const EpochMicros = z
  .number()
  .int()
  .min(0)
  .max(2 ** 53);
/** Who it happened to: an actor (client, pod/p, host/p/h), a process (host-0-1, nats-0) or the launcher. */
export const EventActor = z.string().regex(/^[a-z][a-z0-9/-]{0,99}$/, 'must be an actor or process name');
const count = z.number().int().min(0);
const micros = z
  .number()
  .int()
  .min(0)
  .max(2 ** 53);
const base = { at: EpochMicros, actor: EventActor };

/**
 * An actor spent [at, at + dur) in `name` (a host's phase: forward ... allGather, prepared, healing; a client's or
 * pod's: awaitPrepared, committing, aborting ...) during step `step`, attempt `attempt` (-1: before its first attempt).
 */
export const SliceEvent = z
  .object({
    ...base,
    kind: z.literal('slice'),
    name: z.string().min(1).max(40),
    dur: micros,
    step: count,
    attempt: z.number().int().min(-1),
  })
  .strict();

/** The tensors that travel between hosts: in-pod reduce-scatter slices and all-gather shards, the cross-pod exchange. */
export const FlowTensor = z.enum(['grad.slice', 'grad.exchange', 'param.shard']);
/** One end of a tensor's trip between two hosts: `send` at the sender, `receive` at the receiver (the assembled tensor). */
export const FlowEvent = z
  .object({
    ...base,
    kind: z.literal('flow'),
    end: z.enum(['send', 'receive']),
    tensor: FlowTensor,
    from: EventActor,
    to: EventActor,
    step: count,
    attempt: count,
    bytes: count,
  })
  .strict();

/** A step attempt failed and is run again as attempt + 1 (from the client). */
export const RetryEvent = z.object({ ...base, kind: z.literal('retry'), failure: FailureReport }).strict();

/** A host healed its committed state from its cross-pod peer after a restart: from whom, how many bytes, how long it took. */
export const HealEvent = z
  .object({ ...base, kind: z.literal('heal'), from: EventActor, step: z.number().int().min(-1), bytes: count, ms: z.number().min(0) })
  .strict();

/** The client rolled every host back to a checkpoint (-1: the initial parameters) at step `atStep`. */
export const RestoreEvent = z.object({ ...base, kind: z.literal('restore'), atStep: count, checkpoint: z.number().int().min(-1) }).strict();

/** A checkpoint of `step` was written (its manifest, by the client). */
export const CheckpointEvent = z.object({ ...base, kind: z.literal('checkpoint'), step: count }).strict();

/** Messages an actor rejected since its last such event, by reason (a burst is reported at most about once a second). */
export const RejectedEvent = z.object({ ...base, kind: z.literal('rejected'), counts: RejectCounts }).strict();

/**
 * A process of the run exited: how (`code 0`, `SIGKILL`), the restart it gets (1, 2, ...; null: none), and whether
 * the run expected it (`expected`: the run's end, or the launcher stopped it).
 */
export const ExitEvent = z
  .object({
    ...base,
    kind: z.literal('exit'),
    exit: z.string().max(100),
    restart: z.number().int().min(1).nullable(),
    expected: z.boolean(),
    pid: count.optional(),
  })
  .strict();

/** A fault injected from outside the processes (a scenario's kill, stop, DCN cut, torn checkpoint). */
export const FaultEvent = z
  .object({ ...base, kind: z.literal('fault'), action: z.string().max(40), detail: z.string().max(400).optional() })
  .strict();

/** A process of the run started (its pid, which restart). */
export const StartEvent = z.object({ ...base, kind: z.literal('start'), pid: count, restart: count }).strict();

/**
 * A committed step: what `steps.jsonl` holds a line of. Phase times in ms: the slowest host's (`phaseMs`) and each
 * host's (`hosts`, by actor); `retried`: the attempts of this step that failed first; `ms`: the step's wall time at
 * the client, `at` when it committed.
 */
export const StepEvent = z
  .object({
    ...base,
    kind: z.literal('step'),
    step: count,
    attempt: count,
    loss: z.number(),
    paramsHash: Hash,
    podHashes: z.array(Hash),
    podsAgree: z.boolean(),
    phaseMs: PhaseTimes,
    hosts: z.record(EventActor, PhaseTimes),
    retried: z.array(FailureReport),
    ms: z.number().min(0),
    replayed: z.boolean(),
  })
  .strict();

/** The run started (the launcher: topology, steps asked for) or ended (its outcome, and the failure's sentence if it failed). */
export const RunStateEvent = z
  .object({
    ...base,
    kind: z.literal('run'),
    state: z.enum(['started', 'finished', 'failed']),
    runId: z.string().max(63),
    topology: z.string().max(200),
    steps: count,
    pid: count,
    message: z.string().max(2000).optional(),
  })
  .strict();

export const RunEvent = z.discriminatedUnion('kind', [
  SliceEvent,
  FlowEvent,
  RetryEvent,
  HealEvent,
  RestoreEvent,
  CheckpointEvent,
  RejectedEvent,
  ExitEvent,
  FaultEvent,
  StartEvent,
  StepEvent,
  RunStateEvent,
]);
export type RunEvent = z.infer<typeof RunEvent>;
export type RunEventKind = RunEvent['kind'];
export type SliceEvent = z.infer<typeof SliceEvent>;
export type FlowEvent = z.infer<typeof FlowEvent>;
export type StepEvent = z.infer<typeof StepEvent>;
export type RunStateEvent = z.infer<typeof RunStateEvent>;

/** The kinds `events.jsonl` holds: everything but the timeline's slices and flows (those are in trace.json) and steps (steps.jsonl). */
export const NOTABLE_KINDS: readonly RunEventKind[] = [
  'retry',
  'heal',
  'restore',
  'checkpoint',
  'rejected',
  'exit',
  'fault',
  'start',
  'run',
];

/** The host phases every committed step has a slice for, in order. */
export const STEP_PHASES: readonly z.infer<typeof HostPhase>[] = HostPhase.options;

/** Milliseconds on the run's clock (epoch ms, sub-ms) as epoch microseconds. */
export const toMicros = (ms: number): number => Math.max(0, Math.round(ms * 1000));
