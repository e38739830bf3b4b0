import { z } from 'zod';
import { Hash } from './messages.ts';

/**
 * One record of a run's durable log: the client's decision to commit a step,
 * written before any pod is told to commit. Record n is step n, so the log's
 * sequence number for step s is s + 1 and "append step s" expects the last
 * sequence to be s: a step cannot be committed twice, nor one skipped.
 */
export const RunLogRecord = z
  .object({
    step: z.number().int().min(0),
    attempt: z.number().int().min(0),
    paramsHash: Hash,
    loss: z.number(),
    /** Wall-clock time of the decision (ISO 8601). */
    at: z.string().max(40),
  })
  .strict();
export type RunLogRecord = z.infer<typeof RunLogRecord>;

/** The JetStream stream and subject of a run's log. */
export const runLogStream = (run: string) => `LOCKSTEP_RUN_${run.replace(/-/g, '_').toUpperCase()}`;
export const runLogSubject = (run: string) => `lockstep.${run}.runlog`;
