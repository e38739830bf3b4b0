/** Remembers the last `capacity` message ids, so a repeated message is seen as one. */
export class DedupWindow {
  private readonly seen = new Set<string>();
  constructor(private readonly capacity = 20_000) {}

  has(id: string): boolean {
    return this.seen.has(id);
  }

  /** True the first time an id is offered, false after. */
  firstTime(id: string): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > this.capacity) {
      const oldest = this.seen.values().next().value as string;
      this.seen.delete(oldest);
    }
    return true;
  }
}
