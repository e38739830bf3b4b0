import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { InvalidTopology } from './errors.ts';
import { describeIssues } from './issues.ts';
import { StepTensorKind } from './messages.ts';
import { MessagePhase } from './wire.ts';
import { ComputeSpec, costModelInputsOf, ExchangeSpec, isModeled, TimeScale } from './palm.ts';
import { hostPhaseFloorsMs } from './modeled.ts';

const positiveInt = (what = 'must be >= 1') => z.number({ error: 'must be a number' }).int('must be a whole number').min(1, what);
/** A whole number in [1, max]. */
const boundedInt = (max: number) => positiveInt().max(max, `must be <= ${max}`);

/**
 * The longest delay a Node.js timer holds (2^31 - 1 ms, about 24.8 days): a longer one fires at once
 * (Node warns `TimeoutOverflowWarning` and uses 1 ms). Every wait of a run, its settings and what is
 * derived from them, stays under it; the bounds below make sure.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest deadline a topology or scenario may set: one day (ms). */
export const MAX_DEADLINE_MS = 86_400_000;
/** The longest heartbeat interval: one minute (ms). */
export const MAX_HEARTBEAT_MS = 60_000;
/** Heartbeat intervals of silence: at most this many. */
export const MAX_MISSES = 100;
/** A model dimension is at most this. */
export const MAX_MODEL_DIM = 65_536;
/** Parameters of the model at most (2^24: 64 MiB of float32 a copy; every host holds several copies). */
export const MAX_PARAMETERS = 2 ** 24;
/** Samples of one global batch at most. */
export const MAX_GLOBAL_BATCH = 1_048_576;
/** Floats of activations a step keeps for backward across the cluster at most: globalBatch x (inputDim + hiddenDim + outputDim) (2^26: 256 MiB). */
export const MAX_ACTIVATION_FLOATS = 2 ** 26;
/** NATS's largest message here (bytes): every nats-server of a run is configured with a 1 MiB max_payload. */
export const MAX_MESSAGE_BYTES = 1_000_000;

/** The model: a two-layer MLP (tanh hidden layer) learning a seeded teacher. */
export const ModelSpec = z
  .object({
    inputDim: boundedInt(MAX_MODEL_DIM),
    hiddenDim: boundedInt(MAX_MODEL_DIM),
    outputDim: boundedInt(MAX_MODEL_DIM),
  })
  .strict()
  .refine((m) => parameterCount(m) <= MAX_PARAMETERS, {
    message: `must have at most ${MAX_PARAMETERS} parameters (hiddenDim x (inputDim + outputDim + 1) + outputDim)`,
  });
export type ModelSpec = z.infer<typeof ModelSpec>;

export const AdamSpec = z
  .object({
    kind: z.literal('adam'),
    lr: z.number().positive('must be > 0'),
    beta1: z.number().min(0).max(0.999999).default(0.9),
    beta2: z.number().min(0).max(0.999999).default(0.999),
    eps: z.number().positive('must be > 0').default(1e-8),
  })
  .strict();
export const MomentumSpec = z
  .object({
    kind: z.literal('momentum'),
    lr: z.number().positive('must be > 0'),
    momentum: z.number().min(0).max(0.999999).default(0.9),
  })
  .strict();
export const OptimizerSpec = z.discriminatedUnion('kind', [AdamSpec, MomentumSpec], {
  error: 'must be {kind: "adam", lr, ...} or {kind: "momentum", lr, ...}',
});
export type OptimizerSpec = z.infer<typeof OptimizerSpec>;

export const TrainingSpec = z
  .object({
    seed: z.number().int('must be a whole number').min(0, 'must be >= 0').max(0xffffffff, 'must fit in 32 bits'),
    globalBatch: boundedInt(MAX_GLOBAL_BATCH),
    optimizer: OptimizerSpec,
  })
  .strict();
export type TrainingSpec = z.infer<typeof TrainingSpec>;

export const WireSpec = z
  .object({
    /** Bytes of tensor data in one NATS message; must stay under the server's max_payload. */
    chunkBytes: z
      .number()
      .int()
      .min(4096, 'must be >= 4096')
      .max(MAX_MESSAGE_BYTES, `must be <= ${MAX_MESSAGE_BYTES} (NATS max_payload is 1 MiB)`)
      .default(512 * 1024),
    /** Largest control (JSON) message accepted; anything larger is rejected and counted. */
    maxControlBytes: z
      .number()
      .int()
      .min(1024, 'must be >= 1024')
      .max(MAX_MESSAGE_BYTES, `must be <= ${MAX_MESSAGE_BYTES} (NATS max_payload is 1 MiB)`)
      .default(64 * 1024),
  })
  .strict();

/** Deadlines (ms), each in [1, 86400000] (one day), so that every wait derived from them stays a working Node timer. */
export const DeadlineSpec = z
  .object({
    /** Processes up, subscribed and reachable. */
    startupMs: boundedInt(MAX_DEADLINE_MS).default(60_000),
    /** Any single phase of a host (forward, backward, reduce-scatter, exchange, update, all-gather). */
    phaseMs: boundedInt(MAX_DEADLINE_MS).default(30_000),
    /** A whole step as the client sees it, dispatch to commit. */
    stepMs: boundedInt(MAX_DEADLINE_MS).default(120_000),
  })
  .strict();

export const HeartbeatSpec = z
  .object({
    /** How often a host tells its pod, and a pod the client, that it is alive and in which phase (ms, in [1, 60000]). */
    intervalMs: boundedInt(MAX_HEARTBEAT_MS).default(1000),
    /**
     * Silence, in heartbeat intervals, after which a host (to its pod) or a pod (to the client) is declared silent:
     * one not heard from for `intervalMs x misses` while a step runs fails the attempt. In [2, 100]: with 1 a beat
     * that comes a moment late already counts as silence, and a healthy run fails.
     */
    misses: z
      .number({ error: 'must be a number' })
      .int('must be a whole number')
      .min(2, 'must be >= 2 (with 1, a heartbeat a moment late already counts as silence)')
      .max(MAX_MISSES, `must be <= ${MAX_MISSES}`)
      .default(3),
  })
  .strict();

/** Whether a NATS subject matches a pattern (`*` matches one token, a final `>` the rest). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i < s.length;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** A rule of `action` (which only tensor chunks can suffer) may name tensor kinds only. */
function tensorKindsOnly(action: string) {
  const tensors: readonly string[] = StepTensorKind.options;
  const check = (r: { action: string; kinds?: string[] }) => r.action !== action || (r.kinds ?? []).every((k) => tensors.includes(k));
  return [check, { message: `${action} applies to tensor kinds only (${tensors.join(', ')})`, path: ['kinds'] }] as [
    typeof check,
    { message: string; path: string[] },
  ];
}

/**
 * Seeded message faults, injected by each actor's NATS edge as it publishes.
 * Whether a message is hit depends only on (seed, rule, message id), so a
 * scenario replays the same faults.
 */
export const FaultRule = z
  .object({
    /**
     * drop, duplicate (the same bytes twice), delay (`delayMs`), reorder (after the next message on its subject),
     * corrupt (a tensor chunk's last byte flipped: its checksum fails), forge (a tensor chunk, then a second copy
     * of it with one value changed and a valid checksum: the receiver must see that the copies differ).
     */
    action: z.enum(['drop', 'duplicate', 'delay', 'reorder', 'corrupt', 'forge'], {
      error: 'must be drop, duplicate, delay, reorder, corrupt or forge',
    }),
    /** Message kinds (`host.prepared`, ...) or tensor kinds (`grad.slice`, `grad.exchange`, `param.shard`); all when absent. */
    kinds: z.array(z.string().min(1)).min(1).optional(),
    /** Only messages sent by this role. */
    from: z.enum(['client', 'pod', 'host']).optional(),
    /** Only messages of these protocol phases (see `phaseOfKind`, and each kind's phase in the wire table). */
    phases: z.array(MessagePhase).min(1).optional(),
    /** Only messages published on subjects matching one of these NATS patterns (`*` one token, `>` the rest), e.g. `lockstep.*.host.1.*.data.>` (every sender). */
    subjects: z.array(z.string().min(1).max(300)).min(1).optional(),
    /** Only messages of steps in [from, to]. */
    steps: z
      .object({ from: z.number().int().min(0), to: z.number().int().min(0) })
      .strict()
      .optional(),
    /** Only messages of attempts in [from, to] (a retry is attempt a+1: `{ from: 0, to: 0 }` spares every retry). */
    attempts: z
      .object({ from: z.number().int().min(0), to: z.number().int().min(0) })
      .strict()
      .optional(),
    probability: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1'),
    /** For delay: how long (ms, in [1, 60000]). */
    delayMs: boundedInt(60_000).default(50),
  })
  .strict()
  .refine(...tensorKindsOnly('corrupt'))
  .refine(...tensorKindsOnly('forge'));
export type FaultRule = z.output<typeof FaultRule>;

export const FaultSpec = z
  .object({
    seed: z.number().int().min(0).max(0xffffffff).default(1),
    rules: z.array(FaultRule).default([]),
  })
  .strict();
export type FaultSpec = z.output<typeof FaultSpec>;

export const RecoverySpec = z
  .object({
    /** Attempts of one step before the run gives up: a failed attempt is aborted everywhere and retried as attempt a+1. */
    maxAttempts: positiveInt().max(100, 'must be <= 100').default(3),
    /** Times the client resends a commit (one heartbeat interval apart) before the run gives up. */
    maxResends: z.number().int().min(0, 'must be >= 0').max(100, 'must be <= 100').default(10),
    /** Times the launcher restarts one crashed process (host, pod scheduler, client, nats-server) before the run fails. */
    maxRestarts: z.number().int().min(0, 'must be >= 0').max(100, 'must be <= 100').default(3),
  })
  .strict();

/**
 * Parallel asynchronous dispatch (Pathways): the client keeps up to `depth` steps in flight, dispatching step s+1
 * as soon as step s is dispatched; a host starts step s+1 on step s's prepared, not yet committed, parameters.
 * Commits stay in step order; an aborted step takes every later one with it. `depth: 1` is lockstep's original
 * one step at a time.
 */
export const DispatchSpec = z
  .object({
    depth: z.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be >= 1').max(8, 'must be <= 8').default(2),
  })
  .strict();
export type DispatchSpec = z.infer<typeof DispatchSpec>;

/**
 * How the hosts of a pod run the in-pod collectives (topology field `collectives`). Both reduce in host order
 * (((g_0 + g_1) + g_2) + ... in float32, as `lockstep reference` does), so both give the same bits.
 * - `direct` (the default): the all-to-all of the textbook reduce-scatter and all-gather: every host sends every other
 *   host its slice (and later its new shard); 2 x H x (H - 1) tensors a pod a step, which a pod of 4 hosts does at once.
 * - `chain`: the same reduction as a chain in host order. Reduce-scatter: host k adds its gradient to the running sum
 *   of hosts 0..k-1 it got from host k-1 and passes it to host k+1 (`grad.partial`); the last host holds the pod's sum
 *   and sends each host its reduced shard (`grad.reduced`). All-gather: host k appends its new shard to the prefix of
 *   new shards 0..k-1 and passes it on (`param.prefix`); the last host sends every host the whole (`param.full`).
 *   4 x (H - 1) tensors a pod a step: linear in hosts, at H hops of latency (a pod of 768 hosts: `palm-540b`).
 */
export const CollectivesSpec = z
  .object({
    inPod: z.enum(['direct', 'chain'], { error: 'must be direct or chain' }).default('direct'),
  })
  .strict();
export type CollectivesSpec = z.infer<typeof CollectivesSpec>;

export const CheckpointSpec = z
  .object({
    /** Every host writes its shard and optimizer state after committing step s when (s + 1) is a multiple of this. */
    everySteps: boundedInt(1_000_000).default(10),
    /** Checkpoints kept on disk; older ones are deleted. */
    keep: positiveInt().max(1000, 'must be <= 1000').default(3),
    /**
     * A checkpoint that cannot be written (a full or read-only disk, a path that is a file): `fail` ends the run
     * with an error naming the step and the reason; `continue` goes on without it, and the run's summary counts
     * the checkpoints written and lists those that failed.
     */
    onWriteError: z.enum(['fail', 'continue']).default('fail'),
  })
  .strict();

export const Topology = z
  .object({
    name: z
      .string()
      .min(1, 'must not be empty')
      .regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes'),
    pods: boundedInt(64),
    hostsPerPod: boundedInt(4096),
    /** Modeled only: chips a host stands for (PaLM: 4 TPU v4 chips a host). */
    chipsPerHost: boundedInt(1024).default(4),
    /** How many host actors share one OS process. */
    hostsPerProcess: boundedInt(4096).default(1),
    model: ModelSpec,
    training: TrainingSpec,
    wire: WireSpec.default({ chunkBytes: 512 * 1024, maxControlBytes: 64 * 1024 }),
    deadlines: DeadlineSpec.default({ startupMs: 60_000, phaseMs: 30_000, stepMs: 120_000 }),
    heartbeat: HeartbeatSpec.default({ intervalMs: 1000, misses: 3 }),
    recovery: RecoverySpec.default({ maxAttempts: 3, maxResends: 10, maxRestarts: 3 }),
    checkpoint: CheckpointSpec.default({ everySteps: 10, keep: 3, onWriteError: 'fail' }),
    dispatch: DispatchSpec.default({ depth: 2 }),
    /** How a pod's hosts run the in-pod reduce-scatter and all-gather: `direct` (all-to-all) or `chain` (see `CollectivesSpec`). */
    collectives: CollectivesSpec.default({ inPod: 'direct' }),
    faults: FaultSpec.default({ seed: 1, rules: [] }),
    /**
     * `real`; `modeled`: phases take the PaLM 540B cost model's time (see `costmodel.ts`), with optional overrides;
     * `{ fixedMs }`: each of forward, backward and update takes that long (a benchmark knob).
     */
    compute: ComputeSpec.default('real'),
    /** `compute: modeled` only: modeled seconds per wall second (each phase's modeled time is waited out divided by this). */
    timeScale: TimeScale.default(100),
    /** `compute: modeled` only: whether the cross-pod exchange overlaps backward, layer by layer (see `ExchangeSpec`). */
    exchange: ExchangeSpec.default({ overlapBackward: false }),
  })
  .strict()
  .superRefine((t, ctx) => {
    const workers = t.pods * t.hostsPerPod;
    if (t.training.globalBatch % workers !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['training', 'globalBatch'],
        message: `must be divisible by pods x hostsPerPod (${t.pods} x ${t.hostsPerPod} = ${workers}); got ${t.training.globalBatch}`,
      });
    }
    const acts = t.training.globalBatch * (t.model.inputDim + t.model.hiddenDim + t.model.outputDim);
    if (acts > MAX_ACTIVATION_FLOATS) {
      ctx.addIssue({
        code: 'custom',
        path: ['training', 'globalBatch'],
        message: `must be <= ${Math.floor(MAX_ACTIVATION_FLOATS / (t.model.inputDim + t.model.hiddenDim + t.model.outputDim))} with this model: a step keeps globalBatch x (inputDim + hiddenDim + outputDim) = ${acts} floats of activations, at most ${MAX_ACTIVATION_FLOATS}`,
      });
    }
    let modelOk = isModeled(t.compute);
    if (modelOk) {
      try {
        costModelInputsOf(t);
      } catch (err) {
        modelOk = false;
        for (const issue of (err as z.ZodError).issues ?? [])
          ctx.addIssue({ code: 'custom', path: ['compute', 'modeled', ...issue.path.map(String)], message: issue.message });
      }
    }
    if (modelOk) {
      // every phase waited out at this scale must fit its deadline, and a step (times the steps in flight) the step's
      const floors = hostPhaseFloorsMs(t);
      const [phase, longest] = Object.entries(floors).reduce((a, b) => (b[1] > a[1] ? b : a), ['forward', 0]);
      if (longest >= t.deadlines.phaseMs)
        ctx.addIssue({
          code: 'custom',
          path: ['timeScale'],
          message: `too small: ${phase} takes ${longest.toFixed(0)} ms of wall time at timeScale ${t.timeScale}, not under deadlines.phaseMs (${t.deadlines.phaseMs})`,
        });
      const step = Object.values(floors).reduce((a, b) => a + b, 0) * t.dispatch.depth;
      if (step >= t.deadlines.stepMs)
        ctx.addIssue({
          code: 'custom',
          path: ['timeScale'],
          message: `too small: ${t.dispatch.depth} step(s) in flight take ${step.toFixed(0)} ms of wall time at timeScale ${t.timeScale}, not under deadlines.stepMs (${t.deadlines.stepMs})`,
        });
    }
    const params = parameterCount(t.model);
    if (params < t.hostsPerPod) {
      ctx.addIssue({ code: 'custom', path: ['hostsPerPod'], message: `must be <= the model's parameter count (${params})` });
    }
  });
/** A topology as written in a file (defaults not yet applied). */
export type TopologyInput = z.input<typeof Topology>;
/** A validated topology with every default filled in. */
export type Topology = z.output<typeof Topology>;

/** Number of parameters of the MLP: W1, b1, W2, b2. */
export function parameterCount(m: { inputDim: number; hiddenDim: number; outputDim: number }): number {
  return m.hiddenDim * m.inputDim + m.hiddenDim + m.outputDim * m.hiddenDim + m.outputDim;
}

/** Validate an object as a topology, or throw InvalidTopology naming each bad field. */
export function parseTopology(value: unknown, source = 'topology'): Topology {
  const result = Topology.safeParse(value);
  if (!result.success) throw new InvalidTopology(source, describeIssues(result.error));
  return result.data;
}

/** Parse YAML or JSON text (JSON is YAML) as a topology. */
export function parseTopologyText(text: string, source: string): Topology {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw new InvalidTopology(source, [`(file): not valid YAML or JSON: ${(cause as Error).message.split('\n')[0]}`], { cause });
  }
  return parseTopology(value, source);
}

/** Total host actors in the cluster. */
export function hostCount(t: Topology): number {
  return t.pods * t.hostsPerPod;
}
