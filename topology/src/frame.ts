import { crc32 } from './hash.ts';
import { describeIssues } from './issues.ts';
import { TensorChunkHeader } from './messages.ts';
import { ControlMessage } from './wire.ts';

/**
 * Encoding on the wire. A control message is UTF-8 JSON. A tensor chunk is a
 * binary frame: "LST1", a u32 (little-endian) header length, the JSON header,
 * then the chunk's float32 bytes. Decoding never throws: it returns the value
 * or the reason it was rejected.
 */
const MAGIC = [0x4c, 0x53, 0x54, 0x31]; // LST1
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A short, countable reason (`schema`, `checksum`, ...) and the detail for the log. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string; detail?: string };

export function encodeControl(message: ControlMessage): Uint8Array {
  return encoder.encode(JSON.stringify(message));
}

export function decodeControl(bytes: Uint8Array, maxBytes: number): Decoded<ControlMessage> {
  if (bytes.length > maxBytes) return { ok: false, reason: 'oversized', detail: `${bytes.length} bytes > ${maxBytes}` };
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const parsed = ControlMessage.safeParse(value);
  if (!parsed.success) return { ok: false, reason: 'schema', detail: describeIssues(parsed.error).join('; ') };
  return { ok: true, value: parsed.data };
}

export interface TensorChunk {
  header: TensorChunkHeader;
  data: Uint8Array;
}

type TensorHead = Omit<TensorChunkHeader, 'index' | 'count' | 'offset' | 'length' | 'total' | 'crc32' | 'msgId'> & { msgId: string };

/** Split `tensor` into frames of at most `chunkBytes` of data each. */
export function encodeTensor(head: TensorHead, tensor: Float32Array, chunkBytes: number): Uint8Array[] {
  return [...tensorFrames(head, tensor, chunkBytes)];
}

/**
 * The frames of `tensor` one at a time, each built when asked for: a sender
 * publishes chunk i while chunk i+1 is not yet copied, so the first bytes
 * leave before the last are framed, and only one frame's copy is held at once.
 * The same frames, in the same order, as `encodeTensor`.
 */
export function* tensorFrames(head: TensorHead, tensor: Float32Array, chunkBytes: number): Generator<Uint8Array, void, undefined> {
  const perChunk = Math.max(1, Math.floor(chunkBytes / 4));
  const count = Math.max(1, Math.ceil(tensor.length / perChunk));
  for (let index = 0; index < count; index++) {
    const offset = index * perChunk;
    const length = Math.min(perChunk, tensor.length - offset);
    const data = new Uint8Array(tensor.buffer, tensor.byteOffset + offset * 4, length * 4);
    // one fixed shape, field by field (no spread): a pod's collectives frame hosts squared of these a step
    const header: TensorChunkHeader = {
      v: head.v,
      kind: head.kind,
      runId: head.runId,
      step: head.step,
      attempt: head.attempt,
      sender: head.sender,
      msgId: `${head.msgId}#${index}`,
      tensor: head.tensor,
      shard: head.shard,
      index,
      count,
      offset,
      length,
      total: tensor.length,
      crc32: crc32(data),
    };
    yield frame(header, data);
  }
}

/** One frame from a header and its data (exported so tests can forge frames). */
export function frame(header: TensorChunkHeader, data: Uint8Array): Uint8Array {
  const head = encoder.encode(JSON.stringify(header));
  // every byte is written below: a large frame (about chunkBytes) need not be zeroed first; a small one is
  // cheaper from the JS heap than from a native allocation
  const size = 8 + head.length + data.length;
  const out = size < 65536 ? new Uint8Array(size) : new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, head.length, true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

export function isTensorFrame(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === MAGIC[0] && bytes[1] === MAGIC[1] && bytes[2] === MAGIC[2] && bytes[3] === MAGIC[3];
}

export function decodeTensorChunk(bytes: Uint8Array): Decoded<TensorChunk> {
  if (!isTensorFrame(bytes)) return { ok: false, reason: 'malformed', detail: 'not a tensor frame' };
  const headLen = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + headLen > bytes.length || headLen > 4096) return { ok: false, reason: 'malformed', detail: 'truncated tensor frame' };
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes.subarray(8, 8 + headLen)));
  } catch {
    return { ok: false, reason: 'malformed', detail: 'tensor header is not JSON' };
  }
  const parsed = TensorChunkHeader.safeParse(value);
  if (!parsed.success) return { ok: false, reason: 'schema', detail: describeIssues(parsed.error).join('; ') };
  const header = parsed.data;
  const data = bytes.subarray(8 + headLen);
  if (data.length !== header.length * 4) return { ok: false, reason: 'malformed', detail: 'chunk length does not match its header' };
  if (crc32(data) !== header.crc32)
    return { ok: false, reason: 'checksum', detail: `chunk ${header.index}/${header.count} of ${header.tensor} from ${header.sender}` };
  return { ok: true, value: { header, data } };
}
