/** A completed tensor as kept for comparing late copies: its bytes (shared with the tensor handed out) and its chunk count. */
export interface Completed {
  bytes: Uint8Array;
  count: number;
}

/**
 * The tensors an assembler completed lately, kept so that a late copy of one
 * of their chunks can be compared with what was delivered, and the tensors
 * found in conflict (kept without bytes). Bounded by count and by bytes: the
 * oldest go first, and a tensor forgotten here is a new tensor again (its
 * receiver rejects it as stale or repeated). The bytes are the delivered
 * tensor's own (not a copy): while the receiver holds the tensor they cost
 * nothing, and no receiver writes to a tensor it was given.
 */
export class CompletedTensors {
  private readonly kept = new Map<string, Completed | 'conflict'>();
  private bytes = 0;

  constructor(
    private readonly maxTensors = 1024,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {}

  /** Tensors kept (with bytes, or in conflict), and the bytes kept. */
  get size(): number {
    return this.kept.size;
  }
  get keptBytes(): number {
    return this.bytes;
  }

  get(key: string): Completed | 'conflict' | undefined {
    return this.kept.get(key);
  }

  add(key: string, bytes: Uint8Array, count: number): void {
    this.put(key, { bytes, count });
  }

  /** From now on the tensor `key` is in conflict: its bytes are let go. */
  markConflict(key: string): void {
    this.put(key, 'conflict');
  }

  private put(key: string, value: Completed | 'conflict'): void {
    this.remove(key);
    this.kept.set(key, value);
    if (value !== 'conflict') this.bytes += value.bytes.length;
    // the newest stays even when it alone is over the byte bound
    while (this.kept.size > this.maxTensors || (this.bytes > this.maxBytes && this.kept.size > 1))
      this.remove(this.kept.keys().next().value as string);
  }

  private remove(key: string): void {
    const old = this.kept.get(key);
    if (old === undefined) return;
    if (old !== 'conflict') this.bytes -= old.bytes.length;
    this.kept.delete(key);
  }
}
