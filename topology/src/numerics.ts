/**
 * The reductions every process must agree on. Sums run in index order
 * (host 0, 1, ... or pod 0, 1, ...) whatever process runs them, each addition
 * rounded to float32, so a reduction gives the same bits everywhere.
 */

/** Half-open range of the flat parameter vector that host h of H owns. */
export interface ShardRange {
  start: number;
  end: number;
}

export function shardRange(size: number, shards: number, index: number): ShardRange {
  return { start: Math.floor((index * size) / shards), end: Math.floor(((index + 1) * size) / shards) };
}

export function shardRanges(size: number, shards: number): ShardRange[] {
  return Array.from({ length: shards }, (_, i) => shardRange(size, shards, i));
}

/** Sum `parts` elementwise in the order given: ((p0 + p1) + p2) + ... in float32. */
export function reduceInOrder(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 0) throw new Error('reduceInOrder: nothing to reduce');
  const n = parts[0].length;
  const out = Float32Array.from(parts[0]);
  for (let p = 1; p < parts.length; p++) {
    const part = parts[p];
    if (part.length !== n) throw new Error(`reduceInOrder: part ${p} has ${part.length} elements, expected ${n}`);
    for (let i = 0; i < n; i++) out[i] += part[i];
  }
  return out;
}
