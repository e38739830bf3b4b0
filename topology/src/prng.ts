/**
 * Counter-based deterministic randomness. A value depends only on its key
 * (seed, stream, a, b, i), never on what was drawn before, so any process can
 * produce the sample for (seed, step, index) on its own.
 */

/** 32-bit avalanche mix (lowbias32). */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Combine key words into one 32-bit key. */
export function key32(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const w of words) h = mix32((h ^ (w >>> 0)) + 0x632be5ab);
  return h;
}

/** Streams keep the inputs, the teacher and the initial weights independent. */
export const Stream = { init: 1, teacher: 2, input: 3 } as const;

/** Fill `out` with uniform values in [-scale, scale) drawn from key (seed, stream, a, b). */
export function fillUniform(out: Float32Array, scale: number, seed: number, stream: number, a: number, b: number): Float32Array {
  const base = key32(seed, stream, a, b);
  for (let i = 0; i < out.length; i++) {
    const u = mix32(base + Math.imul(i, 0x9e3779b1)) / 4294967296; // [0, 1)
    out[i] = (u * 2 - 1) * scale;
  }
  return out;
}
