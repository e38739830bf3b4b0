/** Count of rejected messages by reason, kept in every machine's context and reported at the end of a run. */
export type Rejections = Record<string, number>;

export function countReject(r: Rejections, reason: string): Rejections {
  return { ...r, [reason]: (r[reason] ?? 0) + 1 };
}

export function mergeRejections(...all: Rejections[]): Rejections {
  const out: Rejections = {};
  for (const r of all) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + v;
  return out;
}

export function totalRejections(r: Rejections): number {
  return Object.values(r).reduce((a, b) => a + b, 0);
}

/** Why a message for (step, attempt) does not belong to the attempt in flight, or undefined if it does. */
export function stepMismatch(current: { step: number; attempt: number }, msg: { step: number; attempt: number }): string | undefined {
  if (msg.step < current.step) return 'stale step';
  if (msg.step > current.step) return 'future step';
  if (msg.attempt !== current.attempt) return 'wrong attempt';
  return undefined;
}

/** The machine-side bookkeeping every actor shares. */
export interface Bookkeeping {
  step: number;
  attempt: number;
  phase: string;
  rejected: Rejections;
  duplicates: number;
}

type AnyWireEvent = { type: string; msg?: { step: number; attempt: number }; tensor?: { step: number; attempt: number }; reason?: string };

/** What a chunk of a tensor whose copies differ (`tensor.conflict`) is counted as: an alarm among the rejections. */
const CONFLICT_REASON = 'tensor conflict';

/**
 * The context update for an event that does not belong here: an edge's
 * rejection counted by its reason, a chunk of a tensor whose copies differ
 * counted as a tensor conflict, a repeat counted as a duplicate, anything
 * else counted by why it does not fit (stale step, future step, wrong attempt,
 * or not expected in this phase). Nothing else changes.
 */
export function rejection(ctx: Bookkeeping, event: AnyWireEvent): Partial<Pick<Bookkeeping, 'rejected' | 'duplicates'>> {
  if (event.type === 'wire.rejected') return { rejected: countReject(ctx.rejected, event.reason ?? 'rejected') };
  if (event.type === 'tensor.conflict') return { rejected: countReject(ctx.rejected, CONFLICT_REASON) };
  if (event.type === 'wire.duplicate') return { duplicates: ctx.duplicates + 1 };
  const s = event.msg ?? event.tensor;
  return { rejected: countReject(ctx.rejected, (s && stepMismatch(ctx, s)) ?? `not expected in ${ctx.phase}`) };
}

/**
 * The envelope of a message an actor sends for its current step attempt; the id makes a repeat recognizable.
 * `incarnation` (input to every machine) says which life of the actor sent it: a restarted actor counts its
 * resends from 0 again, and without it its new messages would carry its predecessor's ids and be dropped as repeats.
 */
export function envelope(ctx: { runId: string; step: number; attempt: number; incarnation: string }, sender: string, kind: string) {
  return {
    v: 1 as const,
    runId: ctx.runId,
    step: Math.max(0, ctx.step),
    attempt: Math.max(0, ctx.attempt),
    sender,
    msgId: `${sender}/${kind}/${ctx.step}/${ctx.attempt}@${ctx.incarnation}`,
  };
}

/** A process's incarnation for message ids: its pid and start time (adapters only; machines take it as input). */
export function processIncarnation(): string {
  return `${process.pid.toString(36)}.${Date.now().toString(36)}`;
}
