import type { Logger } from 'pino';
import type { RunClock } from '../clock.ts';

/**
 * Warnings about rejected messages at a bounded rate, so that a flood of junk costs a few log lines, not one a
 * message. The first rejection of a reason is logged at once (`count: 1`); later ones of that reason are counted,
 * and said at most once every `everyMs` (ms on the edge's clock) in one line with how many there were since the
 * last line (`count`) and the first detail among them; whatever is still counted when the edge closes is said
 * then (`flush`). So each reason writes at most one line a second (the default), and every rejection is in some
 * line's count. The run summary's counts are the machines' own, exact, and do not depend on these lines.
 */
export class RejectionLog {
  private readonly waiting = new Map<string, { count: number; detail?: string; timer: unknown }>();
  private readonly lastLine = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    private readonly clock: RunClock,
    private readonly msg = 'message rejected',
    private readonly everyMs = 1000,
  ) {}

  /** One more message rejected for `reason` (`detail` says which, for the line). */
  add(reason: string, detail?: string): void {
    const w = this.waiting.get(reason);
    if (w) {
      w.count++;
      return;
    }
    const last = this.lastLine.get(reason);
    const now = this.clock.now();
    if (last === undefined || now - last >= this.everyMs) {
      this.say(reason, 1, detail, now);
      return;
    }
    const timer = this.clock.setTimeout(() => this.sayWaiting(reason), last + this.everyMs - now);
    this.waiting.set(reason, { count: 1, detail, timer });
  }

  /** Say every count still waiting (the edge closes). */
  flush(): void {
    for (const [reason, w] of [...this.waiting]) {
      this.clock.clearTimeout(w.timer);
      this.sayWaiting(reason);
    }
  }

  private sayWaiting(reason: string): void {
    const w = this.waiting.get(reason);
    if (!w) return;
    this.waiting.delete(reason);
    this.say(reason, w.count, w.detail, this.clock.now());
  }

  private say(reason: string, count: number, detail: string | undefined, now: number): void {
    this.lastLine.set(reason, now);
    this.log.warn({ reason, detail, count }, count === 1 ? this.msg : `${this.msg} (${count} since the last line)`);
  }
}
