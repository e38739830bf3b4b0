import type { TensorChunk, TensorChunkHeader, TensorKind } from '@lockstep/topology';
import { CompletedTensors } from './completed.ts';

/** A whole tensor put back together from its chunks. */
export interface AssembledTensor {
  step: number;
  attempt: number;
  sender: string;
  tensor: TensorKind;
  shard: number;
  data: Float32Array;
}

/**
 * Two copies of one tensor (same sender, step, attempt, tensor kind, shard) that differ in chunk `chunk`,
 * at `element` (the first element that differs), found while the first copy was in progress or after it
 * was complete; or `again`: a later chunk of a tensor found in conflict before (no element).
 */
export interface TensorConflict {
  sender: string;
  step: number;
  attempt: number;
  tensor: TensorKind;
  shard: number;
  chunk: number;
  element?: number;
  found: 'inProgress' | 'complete' | 'again';
}

export type AssembleResult =
  | { kind: 'partial' }
  | { kind: 'duplicate' }
  | { kind: 'complete'; tensor: AssembledTensor }
  | { kind: 'conflict'; conflict: TensorConflict }
  | { kind: 'rejected'; reason: string; detail: string };

interface Partial {
  data: Float32Array;
  bytes: Uint8Array;
  got: Set<number>;
  count: number;
  /** When its last new chunk came (ms on the run's clock). */
  lastAt: number;
}

/** Where `data` first differs from `bytes` at byte `at`, in elements from `at` (-1: equal). Equal lengths are the caller's. */
function firstDifference(bytes: Uint8Array, at: number, data: Uint8Array): number {
  if (Buffer.from(bytes.buffer, bytes.byteOffset + at, data.length).equals(data)) return -1;
  let i = 0;
  while (i < data.length && bytes[at + i] === data[i]) i++;
  return Math.floor(i / 4);
}

/**
 * Puts tensors back together from chunks that may come in any order, and is
 * the one that decides what a repeated chunk is. A chunk whose tensor has the
 * wrong size for its shard is rejected; at most `maxPartials` tensors are in
 * progress at once (the oldest is dropped), so forged chunks cannot grow
 * memory without bound.
 *
 * A chunk of a tensor already in progress or lately completed, with an index
 * already taken, is compared byte for byte with what was taken at its offset:
 * the same bytes are a harmless duplicate (the network repeats messages, a
 * peer resends what was asked for again), different bytes a `conflict` (two
 * copies of one tensor differ: one is forged, or corrupt past its checksum).
 * A tensor in conflict is never delivered, and every later chunk of it is a
 * conflict again, so no third copy can settle it. Only repeats are compared:
 * the first copy of every chunk costs nothing more than before.
 */
export class TensorAssembler {
  private readonly partials = new Map<string, Partial>();
  /** Tensors completed lately, with their bytes (bounded by count and bytes), and tensors found in conflict. */
  private readonly completed: CompletedTensors;

  constructor(
    private readonly expectedLength: (tensor: TensorKind, shard: number) => number | undefined,
    private readonly maxPartials = 64,
    limits: { tensors?: number; bytes?: number } = {},
  ) {
    this.completed = new CompletedTensors(limits.tensors, limits.bytes);
  }

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
      const done = this.completed.get(key);
      if (done === 'conflict') return this.conflict(key, header, 'again');
      if (done) {
        if (header.count !== done.count)
          return { kind: 'rejected', reason: 'malformed', detail: `chunk count ${header.count} differs from ${done.count}` };
        const element = firstDifference(done.bytes, header.offset * 4, data);
        return element < 0 ? { kind: 'duplicate' } : this.conflict(key, header, 'complete', header.offset + element);
      }
      if (this.partials.size >= this.maxPartials) this.partials.delete(this.partials.keys().next().value as string);
      // not zeroed: a tensor is handed over only once every chunk has written its part; a small one (a slice of a
      // large pod's collectives) from the JS heap, which is cheaper than a native allocation of its own
      const f32 =
        expected < 16384 ? new Float32Array(expected) : new Float32Array(Buffer.allocUnsafeSlow(expected * 4).buffer, 0, expected);
      p = { data: f32, bytes: new Uint8Array(f32.buffer), got: new Set(), count: header.count, lastAt: now };
      this.partials.set(key, p);
    }
    if (header.count !== p.count)
      return { kind: 'rejected', reason: 'malformed', detail: `chunk count ${header.count} differs from ${p.count}` };
    if (p.got.has(header.index)) {
      const element = firstDifference(p.bytes, header.offset * 4, data);
      return element < 0 ? { kind: 'duplicate' } : this.conflict(key, header, 'inProgress', header.offset + element);
    }
    p.bytes.set(data, header.offset * 4);
    p.got.add(header.index);
    p.lastAt = now;
    if (p.got.size < p.count) return { kind: 'partial' };
    this.partials.delete(key);
    this.completed.add(key, p.bytes, p.count);
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

  /** The copies of tensor `key` differ: it is dropped if in progress, and in conflict from now on. */
  private conflict(key: string, header: TensorChunkHeader, found: TensorConflict['found'], element?: number): AssembleResult {
    this.partials.delete(key);
    this.completed.markConflict(key);
    const { sender, step, attempt, tensor, shard, index: chunk } = header;
    return {
      kind: 'conflict',
      conflict: { sender, step, attempt, tensor, shard, chunk, found, ...(element === undefined ? {} : { element }) },
    };
  }
}
