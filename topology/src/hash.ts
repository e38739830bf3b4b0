import { createHash } from 'node:crypto';
import { crc32 as simdCrc32 } from '@node-rs/crc32';

/**
 * Parameter hashes. A shard hash is SHA-256 over the shard's float32 bytes
 * (little-endian, as laid out in memory). A pod's parameter hash is SHA-256
 * over its hosts' shard digests in host order; it is what `paramsHash` means
 * everywhere in lockstep.
 */
export function shardHash(shard: Float32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(shard.buffer, shard.byteOffset, shard.byteLength))
    .digest('hex');
}

export function combineShardHashes(shardHashes: readonly string[]): string {
  const h = createHash('sha256');
  for (const s of shardHashes) h.update(Buffer.from(s, 'hex'));
  return h.digest('hex');
}

/**
 * CRC-32 (IEEE) of a byte range, the checksum of every tensor chunk on the
 * wire: each chunk is checksummed once by its sender and once by its receiver,
 * so this is the edge's largest own cost per byte. Computed by @node-rs/crc32
 * (SIMD, carry-less multiplication): 4.9 to 6.9 GiB/s here against 1.2 to 1.6
 * for node:zlib's `crc32` over 512 KiB chunks (the same values; see the README's
 * benchmark). `crc32Table` is the byte-at-a-time reference it is tested against.
 */
export function crc32(bytes: Uint8Array): number {
  return simdCrc32(bytes) >>> 0;
}

const table = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (IEEE), one byte at a time from a table: the reference `crc32` is checked against. */
export function crc32Table(bytes: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** SHA-256 over tensors' float32 bytes in order: the checksum of a host's state in transfer and on disk. */
export function tensorsDigest(tensors: readonly Float32Array[]): string {
  const h = createHash('sha256');
  for (const t of tensors) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  return h.digest('hex');
}
