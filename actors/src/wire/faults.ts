import { key32, mix32, type FaultRule, type FaultSpec } from '@lockstep/topology';

export type FaultAction = FaultRule['action'];

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
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

  decide(m: { kind: string; step: number; msgId: string }): { action: FaultAction; delayMs: number }[] {
    const hits: { action: FaultAction; delayMs: number }[] = [];
    this.spec.rules.forEach((r, i) => {
      if (r.from && r.from !== this.role) return;
      if (r.kinds && !r.kinds.includes(m.kind)) return;
      if (r.steps && (m.step < r.steps.from || m.step > r.steps.to)) return;
      const u = mix32(key32(this.spec.seed, i, hashString(m.msgId))) / 4294967296;
      if (u < r.probability) hits.push({ action: r.action, delayMs: r.delayMs });
    });
    return hits;
  }
}
