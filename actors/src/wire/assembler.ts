import type { TensorChunk, TensorKind } from '@lockstep/topology';
import { DedupWindow } from './dedup.ts';

/** A whole tensor put back together from its chunks. */
export interface AssembledTensor {
  step: number;
  attempt: number;
  sender: string;
  tensor: TensorKind;
  shard: number;
  data: Float32Array;
}

export type AssembleResult =
  | { kind: 'partial' }
  | { kind: 'duplicate' }
  | { kind: 'complete'; tensor: AssembledTensor }
  | { kind: 'rejected'; reason: string; detail: string };

interface Partial {
  data: Float32Array;
  bytes: Uint8Array;
  got: Set<number>;
  count: number;
  /** When its last new chunk came (ms on the run's clock). */
  lastAt: number;
}

/**
 * Puts tensors back together from chunks that may come in any order. A chunk
 * whose tensor has the wrong size for its shard is rejected; at most
 * `maxPartials` tensors are in progress at once (the oldest is dropped), so
 * forged chunks cannot grow memory without bound.
 */
export class TensorAssembler {
  private readonly partials = new Map<string, Partial>();
  /** Tensors completed lately: a late repeat of one of their chunks is a duplicate, not a new tensor. */
  private readonly completed = new DedupWindow(1024);

  constructor(
    private readonly expectedLength: (tensor: TensorKind, shard: number) => number | undefined,
    private readonly maxPartials = 64,
  ) {}

  get inProgress(): number {
    return this.partials.size;
  }

  /** Whether chunks of `tensor` from `sender` for (step, attempt) are still coming at `now`: one came within the last `ms`. */
  receiving(sender: string, step: number, attempt: number, tensor: TensorKind, now: number, ms: number): boolean {
    const prefix = `${sender}|${step}|${attempt}|${tensor}|`;
    const since = now - ms;
    for (const [key, p] of this.partials) if (key.startsWith(prefix) && p.lastAt >= since) return true;
    return false;
  }

  /** Add a chunk that came at `now` (ms on the run's clock). */
  add({ header, data }: TensorChunk, now: number): AssembleResult {
    const expected = this.expectedLength(header.tensor, header.shard);
    if (expected === undefined)
      return { kind: 'rejected', reason: 'bad shard', detail: `${header.tensor} shard ${header.shard} is not for this host` };
    if (header.total !== expected)
      return {
        kind: 'rejected',
        reason: 'bad tensor size',
        detail: `${header.tensor} shard ${header.shard}: ${header.total} elements, expected ${expected}`,
      };
    const key = `${header.sender}|${header.step}|${header.attempt}|${header.tensor}|${header.shard}`;
    let p = this.partials.get(key);
    if (!p) {
      if (this.completed.has(key)) return { kind: 'duplicate' };
      if (this.partials.size >= this.maxPartials) this.partials.delete(this.partials.keys().next().value as string);
      const f32 = new Float32Array(expected);
      p = { data: f32, bytes: new Uint8Array(f32.buffer), got: new Set(), count: header.count, lastAt: now };
      this.partials.set(key, p);
    }
    if (header.count !== p.count)
      return { kind: 'rejected', reason: 'malformed', detail: `chunk count ${header.count} differs from ${p.count}` };
    if (p.got.has(header.index)) return { kind: 'partial' };
    p.bytes.set(data, header.offset * 4);
    p.got.add(header.index);
    p.lastAt = now;
    if (p.got.size < p.count) return { kind: 'partial' };
    this.partials.delete(key);
    this.completed.firstTime(key);
    return {
      kind: 'complete',
      tensor: {
        step: header.step,
        attempt: header.attempt,
        sender: header.sender,
        tensor: header.tensor,
        shard: header.shard,
        data: p.data,
      },
    };
  }
}
