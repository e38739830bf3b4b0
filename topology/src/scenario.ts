import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { InvalidInput } from './errors.ts';
import { FailureKind } from './failure.ts';
import { describeIssues } from './issues.ts';
import {
  CollectivesSpec,
  DeadlineSpec,
  DispatchSpec,
  FaultSpec,
  HeartbeatSpec,
  MAX_DEADLINE_MS,
  RecoverySpec,
  type Topology,
} from './topology.ts';

/** Steps a scenario runs at most (as `train --steps`). */
export const MAX_SCENARIO_STEPS = 1_000_000;

/**
 * A fault-injection scenario: a topology, a number of steps, a timeline of
 * process faults and seeded message faults, and the outcome expected.
 */
/** Where in a step a host can be made to fail: a phase of the step, waiting for the commit, or just after committing it. */
export const FaultPhase = z.enum(['forward', 'backward', 'reduceScatter', 'exchange', 'update', 'allGather', 'prepared', 'committed']);
export type FaultPhase = z.infer<typeof FaultPhase>;

/**
 * A host process told (through LOCKSTEP_CRASH_POINT) to signal itself the
 * moment its host enters `phase` of `step`: a real SIGKILL or SIGSTOP at an
 * exact point of the protocol, which a timer from outside cannot hit.
 */
export const CrashPoint = z
  .object({
    host: z.number().int().min(0).max(4095),
    step: z
      .number()
      .int()
      .min(0)
      .max(MAX_SCENARIO_STEPS - 1),
    phase: FaultPhase,
    signal: z.enum(['SIGKILL', 'SIGSTOP']),
    /** Only while the host computes on prepared parameters: a step before this one awaits its commit (dispatch.depth > 1). */
    onPrepared: z.boolean().optional(),
  })
  .strict();
export type CrashPoint = z.infer<typeof CrashPoint>;

export const ProcessFault = z
  .object({
    /** Inject when the client has committed this step; with `inPhase`, inject during this step. Must be a step the scenario runs (< steps). */
    atStep: z
      .number()
      .int('must be a whole number')
      .min(0, 'must be >= 0')
      .max(MAX_SCENARIO_STEPS - 1, `must be <= ${MAX_SCENARIO_STEPS - 1}`),
    /** Inject when the client has committed step `atStep` again in a replay after a checkpoint restore (not at its first commit). */
    replayed: z.boolean().default(false),
    /** Then wait this long (ms, in [0, 86400000]). */
    afterMs: z
      .number()
      .int('must be a whole number')
      .min(0, 'must be >= 0')
      .max(MAX_DEADLINE_MS, `must be <= ${MAX_DEADLINE_MS}`)
      .default(0),
    /** For a host: signal its process the moment it enters this phase of step `atStep` (kill or stop only). */
    inPhase: FaultPhase.optional(),
    /**
     * With `inPhase`: only if the host enters it while computing on prepared parameters, the step before still
     * awaiting its commit (a window that exists only with dispatch.depth > 1; with one step in flight it never fires).
     */
    onPrepared: z.boolean().optional(),
    /**
     * Process faults: stop = SIGSTOP (a straggler), cont = SIGCONT, kill = SIGKILL.
     * tear: cut every replica of shard 0 of the newest checkpoint to half its length (target checkpoint).
     * DCN faults on the route between the pods' nats-servers (target dcn): cut, cut-one-way (`direction`),
     * heal, latency (`value` ms each way), bandwidth (`value` bytes/s each way; 0 lifts it).
     */
    action: z.enum(['stop', 'cont', 'kill', 'tear', 'cut', 'cut-one-way', 'heal', 'latency', 'bandwidth'], {
      error: 'must be stop, cont, kill, tear, cut, cut-one-way, heal, latency or bandwidth',
    }),
    /** The process to signal: the client, a pod scheduler, the process running a host, or a pod's nats-server; `checkpoint` for tear; `dcn` for the network. */
    target: z
      .string()
      .regex(
        /^(client|pod\/\d+|host\/\d+\/\d+|nats\/\d+|checkpoint|dcn)$/,
        'must be client, pod/<p>, host/<p>/<h>, nats/<p>, checkpoint or dcn',
      ),
    /** For latency (ms, at most 60000) and bandwidth (bytes a second, at most 10^10; 0 lifts the limit). */
    value: z.number().int('must be a whole number').min(0, 'must be >= 0').max(10_000_000_000, 'must be <= 10000000000').optional(),
    /** For cut-one-way: forward is pod 0 -> pod 1 (the lower pod to the higher), back the other way. */
    direction: z.enum(['forward', 'back']).default('forward'),
  })
  .strict()
  .refine((f) => !(f.inPhase && f.replayed), { message: 'inPhase and replayed do not go together', path: ['replayed'] })
  .refine((f) => !f.inPhase || (f.target.startsWith('host/') && f.action !== 'cont' && f.action !== 'tear'), {
    message: 'inPhase is for kill or stop of a host',
    path: ['inPhase'],
  })
  .refine((f) => !f.onPrepared || f.inPhase !== undefined, { message: 'onPrepared goes with inPhase', path: ['onPrepared'] })
  .refine((f) => (f.action === 'tear') === (f.target === 'checkpoint'), {
    message: 'tear goes with target checkpoint, and only tear does',
    path: ['target'],
  })
  .refine((f) => DCN_ACTIONS.includes(f.action) === (f.target === 'dcn'), {
    message: 'cut, cut-one-way, heal, latency and bandwidth go with target dcn, and only they do',
    path: ['target'],
  })
  .refine((f) => !(f.action === 'latency' || f.action === 'bandwidth') || f.value !== undefined, {
    message: 'latency and bandwidth need a value',
    path: ['value'],
  })
  .refine((f) => f.action !== 'latency' || (f.value ?? 0) <= 60_000, { message: 'latency must be <= 60000 ms', path: ['value'] });
export const DCN_ACTIONS: readonly string[] = ['cut', 'cut-one-way', 'heal', 'latency', 'bandwidth'];
export type ProcessFault = z.output<typeof ProcessFault>;

export const Scenario = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes'),
    description: z.string().default(''),
    /** A preset name. */
    topology: z.string().min(1),
    steps: z.number().int('must be a whole number').min(1, 'must be >= 1').max(MAX_SCENARIO_STEPS, `must be <= ${MAX_SCENARIO_STEPS}`),
    seed: z.number().int().min(0).max(0xffffffff, 'must fit in 32 bits').optional(),
    deadlines: DeadlineSpec.partial().optional(),
    heartbeat: HeartbeatSpec.partial().optional(),
    recovery: RecoverySpec.partial().optional(),
    /** Steps in flight (the topology's `dispatch`); `lockstep chaos --dispatch-depth` replaces it for every scenario. */
    dispatch: DispatchSpec.partial().optional(),
    /** The in-pod collectives (the topology's `collectives`); `lockstep chaos --collectives` replaces it for every scenario. */
    collectives: CollectivesSpec.partial().optional(),
    /** Seeded message faults (the topology's `faults`). */
    faults: FaultSpec.optional(),
    timeline: z.array(ProcessFault).max(1000, 'must have at most 1000 entries').default([]),
    expect: z.discriminatedUnion('outcome', [
      z
        .object({
          outcome: z.literal('recovers'),
          /** Kinds of failure (each a FailureCause kind, e.g. tensorConflict) that must be among the attempts the run retried. */
          retried: z.array(FailureKind).min(1).max(20).optional(),
        })
        .strict(),
      /**
       * `failure`: the kind of failure the run must end with (the client's typed cause, e.g. podsNotReady).
       * `cause`: fields its cause must have (see `causeMatches`), e.g. `{ pods: [{ pod: 0, silentHosts: [1] }] }`.
       * `error`: a regular expression the run's error message must match (kept for older files; prefer `failure`).
       */
      z
        .object({
          outcome: z.literal('fails'),
          failure: FailureKind.optional(),
          cause: z.record(z.string(), z.unknown()).optional(),
          error: z
            .string()
            .min(1)
            .superRefine((pattern, ctx) => {
              // compiled here, before anything runs: chaos tests the run's error against it only at the end
              try {
                new RegExp(pattern);
              } catch (err) {
                ctx.addIssue({ code: 'custom', message: `must be a regular expression: ${(err as Error).message}` });
              }
            })
            .optional(),
        })
        .strict()
        .refine((e) => e.failure !== undefined || e.error !== undefined, {
          message: 'a failing outcome needs `failure` (a kind) or `error`',
        }),
    ]),
  })
  .strict()
  .superRefine((s, ctx) => {
    s.timeline.forEach((f, i) => {
      // a fault after the last step never fires, and the scenario would pass without it
      if (f.atStep >= s.steps)
        ctx.addIssue({
          code: 'custom',
          path: ['timeline', i, 'atStep'],
          message: `must be < steps (${s.steps}): a fault at step ${f.atStep} never fires`,
        });
    });
  });
export type Scenario = z.output<typeof Scenario>;

/**
 * What in a scenario's timeline its topology does not have: a pod, host or pod's nats-server
 * index out of range. One line each, naming the entry (`timeline[i].target`); none: [].
 */
export function timelineProblems(s: Pick<Scenario, 'timeline'>, t: Pick<Topology, 'name' | 'pods' | 'hostsPerPod'>): string[] {
  const problems: string[] = [];
  s.timeline.forEach((f, i) => {
    const [role, p, h] = f.target.split('/');
    const pod = Number(p);
    if ((role === 'pod' || role === 'nats' || role === 'host') && pod >= t.pods)
      problems.push(`timeline[${i}].target: ${f.target}: topology ${t.name} has pods 0..${t.pods - 1}`);
    else if (role === 'host' && Number(h) >= t.hostsPerPod)
      problems.push(`timeline[${i}].target: ${f.target}: topology ${t.name} has hosts 0..${t.hostsPerPod - 1} in each pod`);
  });
  return problems;
}

/**
 * Whether a failure's cause has every field `want` names, with that value: objects by the
 * fields named (others may be there), arrays element by element (same length), anything else by equality.
 */
export function causeMatches(got: unknown, want: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(got) && got.length === want.length && want.every((w, i) => causeMatches(got[i], w));
  if (want !== null && typeof want === 'object')
    return (
      got !== null &&
      typeof got === 'object' &&
      Object.entries(want).every(([k, w]) => causeMatches((got as Record<string, unknown>)[k], w))
    );
  return Object.is(got, want);
}

export function parseScenarioText(text: string, source: string): Scenario {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw new InvalidInput(`scenario ${source}`, [`(file): not valid YAML: ${(cause as Error).message.split('\n')[0]}`], { cause });
  }
  const r = Scenario.safeParse(value);
  if (!r.success) throw new InvalidInput(`scenario ${source}`, describeIssues(r.error));
  return r.data;
}

/** JSON Schema of scenario files, for editors. */
export function scenarioJsonSchema(): unknown {
  return z.toJSONSchema(Scenario, { io: 'input' });
}
