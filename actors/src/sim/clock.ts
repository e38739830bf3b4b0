import type { RunClock } from '../clock.ts';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * Simulated time for `lockstep sim`: a priority queue of timers ordered by
 * (time, order of arming), so the same run fires the same timers in the same
 * order. It serves as xstate's clock (delayed events), as the actors' `now()`,
 * and as the simulated network's delivery queue. Nothing runs until `next()`
 * pops a timer; time jumps to it (no sleeping).
 * Shaped after xstate's SimulatedClock, with a heap instead of a sort per flush.
 */
export class SimClock implements RunClock {
  private t = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];
  private readonly cancelled = new Set<number>();
  /** Timers fired so far. */
  fired = 0;

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): number {
    const seq = ++this.seq;
    this.push({ at: this.t + Math.max(0, Number.isFinite(ms) ? ms : 0), seq, fn });
    return seq;
  }

  clearTimeout(id: unknown): void {
    if (typeof id === 'number') this.cancelled.add(id);
  }

  /** Fire the next timer (advancing time to it); false when none is left. */
  next(): boolean {
    for (;;) {
      const top = this.pop();
      if (!top) return false;
      if (this.cancelled.delete(top.seq)) continue;
      this.t = top.at;
      this.fired++;
      top.fn();
      return true;
    }
  }

  /** When the next timer is due, if any. */
  peek(): number | undefined {
    return this.heap[0]?.at;
  }

  private less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(x: Timer): void {
    const h = this.heap;
    h.push(x);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private pop(): Timer | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

/** A seeded pseudo-random stream (mulberry32): the simulator's only source of chance. */
export class SimRandom {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}
