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
