import { createHash } from 'node:crypto';
import { phaseOfKind, subjectMatches, type FaultRule, type FaultSpec } from '@lockstep/topology';

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

  decide(m: { kind: string; step: number; msgId: string; subject?: string }): { action: FaultAction; delayMs: number }[] {
    const hits: { action: FaultAction; delayMs: number }[] = [];
    // drawn on the id without the sender's incarnation (see envelope()), so a scenario replays the same faults
    const key = m.msgId.replace(/@[^#]*/, '');
    this.spec.rules.forEach((r, i) => {
      if (r.from && r.from !== this.role) return;
      if (r.kinds && !r.kinds.includes(m.kind)) return;
      if (r.steps && (m.step < r.steps.from || m.step > r.steps.to)) return;
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
