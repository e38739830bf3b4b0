import { z } from 'zod';
import { FailureReport, Hash, PhaseTimes, RejectCounts } from '@lockstep/topology';

/**
 * What a client process prints on stdout for the launcher, one JSON object a
 * line. The launcher validates every line: a child's output is outside input.
 */
export const ReadyLine = z.object({ type: z.literal('ready'), reached: z.number().int(), total: z.number().int() });
export const StepLine = z.object({
  type: z.literal('step.committed'),
  step: z.number().int().min(0),
  attempt: z.number().int().min(0),
  loss: z.number(),
  paramsHash: Hash,
  podHashes: z.array(Hash),
  podsAgree: z.boolean(),
  phaseMs: PhaseTimes,
  ms: z.number(),
  /** Finished by a restarted client from the run log; its predecessor may have reported it already. */
  recovered: z.boolean().optional(),
  /** Run again after a checkpoint restore (committed before, with the same hash). */
  replayed: z.boolean().optional(),
  shardHashes: z.array(Hash),
  /** How long the hosts waited for this step's dispatch after the step before was prepared (mean over hosts), ms. */
  waitedMs: z.number().min(0).default(0),
});
export const SummaryLine = z.object({
  type: z.literal('summary'),
  stepsCommitted: z.number().int(),
  lastStep: z.number().int(),
  loss: z.object({ first: z.number().nullable(), last: z.number().nullable() }),
  paramsHash: Hash.nullable(),
  pods: z.array(z.object({ id: z.string(), paramsHash: Hash })),
  podsIdenticalEveryStep: z.boolean(),
  rejected: RejectCounts,
  duplicates: z.number().int(),
  faultsInjected: z.number().int(),
  podsReported: z.number().int(),
  trainMs: z.number(),
  /** Why the run ended early: the kind, the typed failure (step, reporting pod and host, cause) and its sentence. */
  failure: FailureReport.nullable(),
  /** Steps in the run's durable log at the end: every step committed in the run, by any client. */
  logged: z.number().int(),
  /** Rollbacks to a checkpoint after every replica of a shard was lost. */
  restores: z.array(
    z.object({
      atStep: z.number().int(),
      checkpoint: z.number().int(),
      skipped: z.array(z.object({ step: z.number().int(), reason: z.string() })),
    }),
  ),
  /** Step attempts that failed and were retried, with why (the same shape as `failure`). */
  retried: z.array(FailureReport),
});
/** A checkpoint the client wrote (its manifest, after the hosts' shards), or could not write and why. */
export const CheckpointLine = z.object({
  type: z.literal('checkpoint'),
  step: z.number().int().min(0),
  written: z.boolean(),
  reason: z.string().max(1000).optional(),
});
export const ClientLine = z.discriminatedUnion('type', [ReadyLine, StepLine, CheckpointLine, SummaryLine]);
export type ClientLine = z.infer<typeof ClientLine>;
export type StepLine = z.infer<typeof StepLine>;
export type SummaryLine = z.infer<typeof SummaryLine>;
