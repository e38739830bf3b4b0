import { describe, expect, it } from 'vitest';
import { decodeControl, decodeTensorChunk, encodeControl, encodeTensor, frame, tensorFrames, type StepDispatch } from '../src/index.ts';

const head = {
  v: 1 as const,
  runId: 'r1',
  step: 3,
  attempt: 0,
  sender: 'host/0/1',
  msgId: 'm',
  kind: 'tensor.chunk' as const,
  tensor: 'grad.slice' as const,
  shard: 0,
};

describe('wire frames', () => {
  it('splits a tensor into chunks under the chunk size and puts it back', () => {
    const t = Float32Array.from({ length: 300_000 }, (_, i) => Math.sin(i));
    const frames = encodeTensor(head, t, 256 * 1024);
    expect(frames.length).toBe(Math.ceil((300_000 * 4) / (256 * 1024)));
    const back = new Float32Array(t.length);
    for (const f of frames) {
      expect(f.length).toBeLessThan(256 * 1024 + 1024);
      const d = decodeTensorChunk(f);
      if (!d.ok) throw new Error(d.reason);
      new Uint8Array(back.buffer).set(d.value.data, d.value.header.offset * 4);
    }
    expect(Buffer.from(back.buffer).equals(Buffer.from(t.buffer))).toBe(true);
  });

  it('detects a corrupted chunk by its checksum', () => {
    const [f] = encodeTensor(head, Float32Array.of(1, 2, 3), 4096);
    f[f.length - 1] ^= 0x40;
    expect(decodeTensorChunk(f)).toMatchObject({ ok: false, reason: 'checksum' });
  });

  it('tensorFrames builds each frame when asked for: the same frames, in the same order, as encodeTensor', () => {
    const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const lazy = tensorFrames({ ...head, msgId: 'm' }, data, 1024);
    const first = lazy.next();
    expect(first.done).toBe(false);
    // the next frame is not built yet: changing the data now shows in it (and so the edge publishes each as it is built)
    data[256] = 42;
    const rest = [...lazy];
    expect([first.value, ...rest]).toEqual(encodeTensor({ ...head, msgId: 'm' }, data, 1024));
    const second = decodeTensorChunk(rest[0] as Uint8Array);
    expect(second.ok && new Float32Array(second.value.data.slice().buffer)[0]).toBe(42);
    expect(rest).toHaveLength(3);
  });

  it('rejects a frame whose header lies about its length', () => {
    const data = new Uint8Array(8);
    const bad = frame({ ...head, msgId: 'x', index: 0, count: 1, offset: 0, length: 3, total: 3, crc32: 0 }, data);
    expect(decodeTensorChunk(bad)).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('control messages: round trip, malformed JSON, schema, oversized', () => {
    const m: StepDispatch = {
      v: 1,
      runId: 'r1',
      step: 0,
      attempt: 0,
      sender: 'client',
      msgId: 'a',
      kind: 'step.dispatch',
      samples: { start: 0, end: 32 },
      committed: -1,
    };
    expect(decodeControl(encodeControl(m), 65536)).toEqual({ ok: true, value: m });
    expect(decodeControl(new TextEncoder().encode('{nope'), 65536)).toMatchObject({ ok: false, reason: 'malformed' });
    const noSamples = new TextEncoder().encode(JSON.stringify({ ...m, samples: undefined }));
    expect(decodeControl(noSamples, 65536)).toMatchObject({ ok: false, reason: 'schema', detail: expect.stringMatching(/samples/) });
    expect(decodeControl(new TextEncoder().encode(JSON.stringify({ ...m, sender: 'mallory' })), 65536)).toMatchObject({
      ok: false,
      reason: 'schema',
    });
    expect(decodeControl(new Uint8Array(70000), 65536)).toMatchObject({ ok: false, reason: 'oversized' });
  });
});
