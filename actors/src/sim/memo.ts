import type { Activations } from '@lockstep/topology';
import { computeFor, type BackwardInput, type ForwardInput } from '../host/host.actors.ts';

/**
 * The simulator's forward and backward, remembered across the schedules a
 * worker runs. Both are pure functions of their inputs, and most schedules
 * of a seed set reach the same parameters at the same step (a fault changes
 * when a step runs, not what it computes), so the result of an identical
 * input is returned instead of recomputed: the same bits, without the
 * arithmetic (a fifth of a fault-free schedule's CPU on `tiny`).
 *
 * An input is identical when its step, sample range, batch size, model,
 * task seed and every bit of its parameters are: the key holds a 32-bit
 * FNV-1a fingerprint of the parameter bits, and a hit is taken only after
 * comparing every word with the parameters it was computed from. Outputs are
 * copied on the way out where the host may keep them (the gradient), and
 * activations are shared read-only (backward and the host only read them).
 * Bounded: the oldest entries go past `limit`.
 */
export class ComputeMemo {
  private readonly forwards = new Map<string, { params: Uint32Array; acts: Activations }>();
  private readonly backwards = new WeakMap<Activations, { params: Uint32Array; grad: Float32Array }>();
  hits = 0;
  misses = 0;

  constructor(private readonly limit = 4096) {}

  forwardPass(i: ForwardInput): Activations {
    const bits = new Uint32Array(i.params.buffer, i.params.byteOffset, i.params.length);
    const m = i.model;
    const key = `${i.step}|${i.samples.start}|${i.samples.end}|${i.globalBatch}|${m.inputDim}x${m.hiddenDim}x${m.outputDim}|${i.task.seed}|${fnv1a(bits)}`;
    const hit = this.forwards.get(key);
    if (hit && sameBits(hit.params, bits)) {
      this.hits++;
      return hit.acts;
    }
    this.misses++;
    const acts = computeFor.forwardPass(i);
    if (this.forwards.size >= this.limit) this.forwards.delete(this.forwards.keys().next().value as string);
    this.forwards.set(key, { params: bits.slice(), acts });
    return acts;
  }

  backwardPass(i: BackwardInput): Float32Array {
    const bits = new Uint32Array(i.params.buffer, i.params.byteOffset, i.params.length);
    const hit = this.backwards.get(i.acts);
    if (hit && sameBits(hit.params, bits)) {
      this.hits++;
      return hit.grad.slice();
    }
    this.misses++;
    const grad = computeFor.backwardPass(i);
    this.backwards.set(i.acts, { params: bits.slice(), grad: grad.slice() });
    return grad;
  }
}

/** 32-bit FNV-1a over words (each word's bytes folded at once). */
function fnv1a(words: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < words.length; k++) h = Math.imul(h ^ words[k], 0x01000193);
  return h >>> 0;
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
