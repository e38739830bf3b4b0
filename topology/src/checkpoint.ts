import { createHash } from 'node:crypto';
import { z } from 'zod';
import { describeIssues } from './issues.ts';
import { Hash, RunId } from './messages.ts';

/**
 * Checkpoints on disk. After committing step s (when s + 1 is a multiple of
 * `checkpoint.everySteps`) every host writes one file with its shard and its
 * optimizer state; host h of every pod writes the same bytes, so each shard
 * has one replica per pod. The client writes the manifest: the step, the
 * parameter hash and each shard's hash. A checkpoint is usable when its
 * manifest parses and every shard has a replica whose checksum and hash
 * match; a torn or corrupted one is skipped for the one before it.
 *
 *   <dir>/step-<s>/manifest.json
 *   <dir>/step-<s>/pod<p>-host<h>.ckpt   "LSCK", u32 header length, JSON header, float32 payload
 */
export const CheckpointManifest = z
  .object({
    format: z.literal('lockstep-checkpoint/1'),
    runId: RunId,
    step: z.number().int().min(0),
    attempt: z.number().int().min(0),
    paramsHash: Hash,
    shardHashes: z.array(Hash).min(1),
    pods: z.number().int().min(1),
    writtenAt: z.string().max(40),
  })
  .strict();
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

export const ShardFileHeader = z
  .object({
    format: z.literal('lockstep-shard/1'),
    runId: RunId,
    step: z.number().int().min(0),
    pod: z.number().int().min(0),
    host: z.number().int().min(0),
    /** Float32 elements of the shard, then of each optimizer tensor (same length). */
    length: z.number().int().min(0),
    optTensors: z.number().int().min(0).max(4),
    shardHash: Hash,
    /** SHA-256 of the payload bytes. */
    sha256: Hash,
  })
  .strict();
export type ShardFileHeader = z.infer<typeof ShardFileHeader>;

const MAGIC = Buffer.from('LSCK');

export const checkpointDirName = (step: number) => `step-${String(step).padStart(8, '0')}`;
export const shardFileName = (pod: number, host: number) => `pod${pod}-host${host}.ckpt`;

export function encodeShardFile(
  head: Omit<ShardFileHeader, 'format' | 'sha256' | 'length' | 'optTensors'>,
  shard: Float32Array,
  opt: Float32Array[],
): Buffer {
  const parts = [shard, ...opt].map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength));
  const payload = Buffer.concat(parts);
  const header: ShardFileHeader = {
    format: 'lockstep-shard/1',
    ...head,
    length: shard.length,
    optTensors: opt.length,
    sha256: createHash('sha256').update(payload).digest('hex'),
  };
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length);
  return Buffer.concat([MAGIC, len, h, payload]);
}

/** Parse and verify a shard file: the header's schema and the payload's SHA-256. Never throws. */
export function decodeShardFile(
  bytes: Buffer,
): { ok: true; header: ShardFileHeader; shard: Float32Array; opt: Float32Array[] } | { ok: false; reason: string } {
  if (bytes.length < 8 || !bytes.subarray(0, 4).equals(MAGIC)) return { ok: false, reason: 'not a lockstep shard file' };
  const hl = bytes.readUInt32LE(4);
  if (8 + hl > bytes.length || hl > 4096) return { ok: false, reason: 'truncated header' };
  let value: unknown;
  try {
    value = JSON.parse(bytes.subarray(8, 8 + hl).toString('utf8'));
  } catch {
    return { ok: false, reason: 'header is not JSON' };
  }
  const r = ShardFileHeader.safeParse(value);
  if (!r.success) return { ok: false, reason: `header: ${describeIssues(r.error).join('; ')}` };
  const header = r.data;
  const payload = bytes.subarray(8 + hl);
  if (payload.length !== header.length * 4 * (1 + header.optTensors))
    return { ok: false, reason: `payload is ${payload.length} bytes, expected ${header.length * 4 * (1 + header.optTensors)} (torn)` };
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256)
    return { ok: false, reason: 'payload checksum mismatch (corrupted)' };
  const copy = new Float32Array(header.length * (1 + header.optTensors));
  new Uint8Array(copy.buffer).set(payload);
  const at = (i: number) => copy.subarray(i * header.length, (i + 1) * header.length);
  return { ok: true, header, shard: at(0), opt: Array.from({ length: header.optTensors }, (_, i) => at(i + 1)) };
}
