import { createHash } from 'node:crypto';
import { crc32, decodeTensorChunk, frame, phaseOfKind, subjectMatches, type FaultRule, type FaultSpec } from '@lockstep/topology';

export type FaultAction = FaultRule['action'];

/** A uniform draw in [0, 1) from (seed, rule, message id): message ids that differ in one character are independent. */
function draw(seed: number, rule: number, msgId: string): number {
  return createHash('sha256').update(`${seed}:${rule}:${msgId}`).digest().readUInt32LE(0) / 4294967296;
}

/**
 * Decides, for each message an actor publishes, which seeded faults hit it.
 * The decision depends only on (seed, rule index, message id): the same
 * scenario injects the same faults, whatever the timing.
 */
export class FaultPlan {
  constructor(
    private readonly spec: FaultSpec,
    private readonly role: 'client' | 'pod' | 'host',
  ) {}

  get active(): boolean {
    return this.spec.rules.length > 0;
  }

  decide(m: { kind: string; step: number; attempt?: number; msgId: string; subject?: string }): { action: FaultAction; delayMs: number }[] {
    const hits: { action: FaultAction; delayMs: number }[] = [];
    // drawn on the id without the sender's incarnation (see envelope()), so a scenario replays the same faults
    const key = m.msgId.replace(/@[^#]*/, '');
    this.spec.rules.forEach((r, i) => {
      if (r.from && r.from !== this.role) return;
      if (r.kinds && !r.kinds.includes(m.kind)) return;
      if (r.steps && (m.step < r.steps.from || m.step > r.steps.to)) return;
      if (r.attempts && (m.attempt === undefined || m.attempt < r.attempts.from || m.attempt > r.attempts.to)) return;
      if (r.phases) {
        const phase = phaseOfKind(m.kind);
        if (!phase || !r.phases.includes(phase)) return;
      }
      if (r.subjects && (m.subject === undefined || !r.subjects.some((p) => subjectMatches(p, m.subject!)))) return;
      if (draw(this.spec.seed, i, key) < r.probability) hits.push({ action: r.action, delayMs: r.delayMs });
    });
    return hits;
  }
}

/**
 * A forged copy of a tensor chunk frame (the `forge` fault): the same header
 * (sender, tensor, index, message id) with the lowest bit of its first value
 * flipped and a checksum that matches, so only a receiver that compares the
 * copies can tell. Undefined for a frame that does not decode or has no values.
 */
export function forgedCopy(bytes: Uint8Array): Uint8Array | undefined {
  const d = decodeTensorChunk(bytes);
  if (!d.ok || d.value.data.length === 0) return undefined;
  const data = Uint8Array.from(d.value.data);
  data[0] ^= 1;
  return frame({ ...d.value.header, crc32: crc32(data) }, data);
}
