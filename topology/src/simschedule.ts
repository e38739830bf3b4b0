import { z } from 'zod';

/**
 * One fault schedule for `lockstep sim`: what the simulated cluster suffers,
 * all of it drawn from `seed` for a profile (or written by hand, or left by
 * shrinking a failing one). Times are ms of simulated time from the start.
 */
export const SimProfile = z.enum(['none', 'messages', 'crashes', 'partitions', 'all']);
export type SimProfile = z.infer<typeof SimProfile>;

const ms = z.number().min(0).max(86_400_000);
const probability = z.number().min(0).max(1);

export const SimFault = z.discriminatedUnion('kind', [
  /**
   * The actor dies (its transport closes, its state is gone) and starts again `downMs` later: a host heals, a pod rejoins,
   * the client resumes from the run log. `inReplay` (the client only): not at `at` but at the first step the client
   * commits again in a replay after a checkpoint restore, from `at` on (never, if no replay comes).
   */
  z
    .object({
      kind: z.literal('crash'),
      at: ms,
      target: z.string().regex(/^(client|pod\/\d{1,6}|host\/\d{1,6}\/\d{1,6})$/, 'must be client, pod/<p> or host/<p>/<h>'),
      downMs: ms,
      inReplay: z.literal(true).optional(),
    })
    .strict()
    .refine((f) => !f.inReplay || f.target === 'client', { message: 'inReplay is for a crash of the client', path: ['inReplay'] }),
  /** The DCN between the pods' servers is cut (both ways, or forward = pod 0 -> pod 1, or back) for `durationMs`. */
  z.object({ kind: z.literal('partition'), at: ms, direction: z.enum(['both', 'forward', 'back']), durationMs: ms }).strict(),
  /** Every replica of shard 0 of the newest checkpoint is cut to half its length (a torn write). */
  z.object({ kind: z.literal('tear'), at: ms }).strict(),
  /** The next tensor chunk sent after `at` is followed by a forged copy: one value changed, a valid checksum (see the forge fault). */
  z.object({ kind: z.literal('forge'), at: ms }).strict(),
]);
export type SimFault = z.infer<typeof SimFault>;

export const SimSchedule = z
  .object({
    seed: z.number().int().min(0).max(0xffffffff),
    profile: SimProfile,
    /** A preset name. */
    topology: z.string().min(1).max(100),
    steps: z.number().int().min(1).max(10_000),
    /** Simulated forward time of a host (backward takes twice, update half), ms; each drawn +-25% from the seed. */
    computeMs: z.number().min(0.01).max(60_000).default(2),
    /** Steps the client keeps in flight (the topology's `dispatch.depth`); absent: the preset's. */
    dispatchDepth: z.number().int().min(1).max(8).optional(),
    /** How the pods' in-pod collectives run (the topology's `collectives.inPod`); absent: the preset's. */
    inPod: z.enum(['direct', 'chain']).optional(),
    /** Message faults on every delivery until `faultsUntilMs`. */
    net: z.object({ drop: probability, duplicate: probability, delay: probability, delayMaxMs: ms }).strict(),
    faultsUntilMs: ms,
    faults: z.array(SimFault).max(1000),
  })
  .strict();
export type SimSchedule = z.infer<typeof SimSchedule>;

/** Why a schedule's faults do not fit its topology (a crash aimed at an actor it does not have), or undefined. */
export function scheduleProblems(s: SimSchedule, t: { pods: number; hostsPerPod: number }): string[] {
  const out: string[] = [];
  s.faults.forEach((f, i) => {
    if (f.kind !== 'crash') return;
    const m = /^(pod|host)\/(\d+)(?:\/(\d+))?$/.exec(f.target);
    if (!m) return;
    const pod = Number(m[2]);
    const host = m[3] === undefined ? 0 : Number(m[3]);
    if (pod >= t.pods || host >= t.hostsPerPod)
      out.push(`faults.${i}.target: ${f.target} is not an actor of a topology of ${t.pods} pods x ${t.hostsPerPod} hosts`);
  });
  return out;
}
