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

/**
 * The run log's rule for appending step `rec.step` to a log holding steps
 * 0..n-1 (what the JetStream stream enforces with expected-last-sequence, and
 * the simulator's log in memory): the next step is appended; a logged step
 * is accepted again only with the same parameter hash (a replay after a
 * checkpoint restore must reproduce its bits); anything else is a conflict.
 */
export function runLogAppend(
  logged: readonly Pick<RunLogRecord, 'step' | 'paramsHash'>[],
  rec: Pick<RunLogRecord, 'step' | 'paramsHash'>,
): { kind: 'appended' } | { kind: 'replayed' } | { kind: 'conflict'; reason: string } {
  if (rec.step === logged.length) return { kind: 'appended' };
  if (rec.step < logged.length) {
    const had = logged[rec.step].paramsHash;
    return had === rec.paramsHash
      ? { kind: 'replayed' }
      : {
          kind: 'conflict',
          reason: `step ${rec.step} was committed with paramsHash ${had.slice(0, 12)}, now ${rec.paramsHash.slice(0, 12)}`,
        };
  }
  return { kind: 'conflict', reason: `step ${rec.step} after ${logged.length} records (an earlier step is missing)` };
}
