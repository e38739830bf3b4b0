import { describe, expect, it } from 'vitest';
import { combineShardHashes, crc32, crc32Table, reduceInOrder, shardHash, shardRanges } from '../src/index.ts';

describe('numerics', () => {
  it('shards cover the parameter vector exactly once, in order', () => {
    for (const [n, k] of [
      [10, 3],
      [2632, 4],
      [7, 7],
      [1000003, 768],
    ]) {
      const r = shardRanges(n, k);
      expect(r[0].start).toBe(0);
      expect(r[k - 1].end).toBe(n);
      for (let i = 1; i < k; i++) expect(r[i].start).toBe(r[i - 1].end);
    }
  });

  it('reduces in the given order, rounding every addition to float32', () => {
    // 1e8 + 1 - 1e8 in float32: order changes the bits
    const a = Float32Array.of(1e8);
    const b = Float32Array.of(1);
    const c = Float32Array.of(-1e8);
    expect(reduceInOrder([a, b, c])[0]).toBe(0); // (1e8 + 1) rounds to 1e8
    expect(reduceInOrder([a, c, b])[0]).toBe(1);
    expect(() => reduceInOrder([a, new Float32Array(2)])).toThrow(/part 1 has 2 elements/);
  });

  it('does not mutate its inputs', () => {
    const a = Float32Array.of(1, 2);
    reduceInOrder([a, Float32Array.of(3, 4)]);
    expect([...a]).toEqual([1, 2]);
  });

  it('hashes shards by their bytes and pods by their shard hashes in order', () => {
    const x = Float32Array.of(1, 2, 3);
    const y = Float32Array.of(1, 2, 3.0000002);
    expect(shardHash(x)).toBe(shardHash(Float32Array.of(1, 2, 3)));
    expect(shardHash(x)).not.toBe(shardHash(y));
    expect(combineShardHashes([shardHash(x), shardHash(y)])).not.toBe(combineShardHashes([shardHash(y), shardHash(x)]));
  });

  it('computes CRC-32 (IEEE)', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) & 0xff);
    expect(crc32(bytes)).toBe(crc32Table(bytes)); // the SIMD one and the reference agree
    // also on a view at an odd offset into a larger buffer (a chunk inside a frame or a tensor), and on nothing
    const view = bytes.subarray(7, 9_001);
    expect(crc32(view)).toBe(crc32Table(view));
    expect(crc32(view)).not.toBe(crc32(bytes.subarray(7, 9_000)));
    expect(crc32(new Uint8Array(0))).toBe(0);
  });
});
