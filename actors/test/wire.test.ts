import { describe, expect, it } from 'vitest';
import { encodeTensor, type TensorChunk, decodeTensorChunk } from '@lockstep/topology';
import { CompletedTensors, DedupWindow, TensorAssembler, authorize, forgedCopy } from '../src/index.ts';

const head = {
  v: 1 as const,
  runId: 'r',
  step: 0,
  attempt: 0,
  sender: 'host/0/1',
  msgId: 'x',
  kind: 'tensor.chunk' as const,
  tensor: 'grad.slice' as const,
  shard: 0,
};
const chunks = (data: Float32Array, bytes = 4096): TensorChunk[] =>
  encodeTensor(head, data, bytes).map((f) => (decodeTensorChunk(f) as { ok: true; value: TensorChunk }).value);

describe('tensor assembler', () => {
  it('reassembles chunks that arrive in any order and ignores repeats', () => {
    const data = Float32Array.from({ length: 5000 }, (_, i) => i * 0.5);
    const cs = chunks(data).reverse();
    const asm = new TensorAssembler(() => 5000);
    let done: Float32Array | undefined;
    for (const c of [...cs, cs[0]]) {
      const r = asm.add(c, 0);
      if (r.kind === 'complete') done = r.tensor.data;
    }
    expect(done && [...done]).toEqual([...data]);
    expect(asm.inProgress).toBe(0);
  });

  it('knows whether a tensor from a peer is still coming at a given time (a request for it is then held back)', () => {
    const cs = chunks(new Float32Array(5000));
    const asm = new TensorAssembler(() => 5000);
    expect(asm.receiving('host/0/1', 0, 0, 'grad.slice', 1000, 10_000)).toBe(false); // nothing yet: ask
    asm.add(cs[0], 1000);
    expect(asm.receiving('host/0/1', 0, 0, 'grad.slice', 1000, 10_000)).toBe(true);
    expect(asm.receiving('host/0/1', 0, 0, 'grad.slice', 11_000, 10_000)).toBe(true); // its last chunk came just within the window
    expect(asm.receiving('host/0/1', 0, 0, 'grad.slice', 11_001, 10_000)).toBe(false); // quiet too long: ask
    expect(asm.receiving('host/0/2', 0, 0, 'grad.slice', 1000, 10_000)).toBe(false);
    expect(asm.receiving('host/0/1', 0, 1, 'grad.slice', 1000, 10_000)).toBe(false);
    expect(asm.receiving('host/0/1', 0, 0, 'param.shard', 1000, 10_000)).toBe(false);
    for (const c of cs.slice(1)) asm.add(c, 1001);
    expect(asm.receiving('host/0/1', 0, 0, 'grad.slice', 1001, 10_000)).toBe(false); // complete: nothing is coming
  });

  it('rejects a tensor of the wrong size for its shard', () => {
    const asm = new TensorAssembler(() => 10);
    expect(asm.add(chunks(new Float32Array(20))[0], 0)).toMatchObject({ kind: 'rejected', reason: 'bad tensor size' });
  });

  it('keeps at most maxPartials tensors in progress', () => {
    const asm = new TensorAssembler(() => 5000, 4);
    for (let s = 0; s < 10; s++)
      asm.add({ ...chunks(new Float32Array(5000))[0], header: { ...chunks(new Float32Array(5000))[0].header, step: s } }, s);
    expect(asm.inProgress).toBe(4);
  });
});

describe('two copies of one tensor', () => {
  const data = Float32Array.from({ length: 5000 }, (_, i) => i * 0.25);
  /** A copy of the tensor with element `at` changed (its chunks' checksums made to match). */
  const changed = (at: number) => {
    const d = Float32Array.from(data);
    d[at] += 1;
    return chunks(d);
  };
  const addAll = (asm: TensorAssembler, cs: TensorChunk[]) => cs.map((c) => asm.add(c, 0));

  it('the same bytes twice are a duplicate: a repeated chunk in progress, a whole second copy after completion, a resend under another id', () => {
    const asm = new TensorAssembler(() => 5000);
    const cs = chunks(data);
    expect(cs.length).toBe(5);
    expect(asm.add(cs[0], 0).kind).toBe('partial');
    expect(asm.add(cs[0], 0).kind).toBe('duplicate'); // the network repeated it
    expect(addAll(asm, cs.slice(1)).map((r) => r.kind)).toEqual(['partial', 'partial', 'partial', 'complete']);
    expect(addAll(asm, cs).map((r) => r.kind)).toEqual(Array(5).fill('duplicate'));
    const resent = cs.map((c) => ({ ...c, header: { ...c.header, msgId: `${c.header.msgId}.x1` } }));
    expect(addAll(asm, resent).map((r) => r.kind)).toEqual(Array(5).fill('duplicate'));
  });

  it('a complete copy that differs from the one delivered is a conflict naming the tensor, the chunk and the element; the tensor stays in conflict', () => {
    const asm = new TensorAssembler(() => 5000);
    expect(addAll(asm, chunks(data)).at(-1)?.kind).toBe('complete');
    const forged = changed(2100); // chunk 2 (1024 elements a chunk)
    const rs = addAll(asm, forged);
    expect(rs.slice(0, 2).map((r) => r.kind)).toEqual(['duplicate', 'duplicate']);
    expect(rs[2]).toEqual({
      kind: 'conflict',
      conflict: { sender: 'host/0/1', step: 0, attempt: 0, tensor: 'grad.slice', shard: 0, chunk: 2, element: 2100, found: 'complete' },
    });
    // no third copy settles it, the first one included: every later chunk is a conflict again, nothing is delivered again
    const again = (rs: ReturnType<typeof addAll>) => rs.map((r) => r.kind === 'conflict' && r.conflict.found);
    expect(again(addAll(asm, [...forged.slice(3), ...chunks(data)]))).toEqual(Array(7).fill('again'));
    expect(asm.inProgress).toBe(0);
  });

  it('a forged copy that comes first is not delivered silently: the real one after it is the conflict', () => {
    const asm = new TensorAssembler(() => 5000);
    expect(addAll(asm, changed(0)).at(-1)?.kind).toBe('complete');
    expect(asm.add(chunks(data)[0], 0)).toMatchObject({ kind: 'conflict', conflict: { chunk: 0, element: 0, found: 'complete' } });
  });

  it('a chunk that comes twice with different bytes before the tensor is complete is a conflict; the tensor is dropped, never delivered', () => {
    const asm = new TensorAssembler(() => 5000);
    const cs = chunks(data);
    asm.add(cs[1], 0);
    asm.add(cs[3], 0);
    expect(asm.add(changed(3100)[3], 0)).toEqual({
      kind: 'conflict',
      conflict: { sender: 'host/0/1', step: 0, attempt: 0, tensor: 'grad.slice', shard: 0, chunk: 3, element: 3100, found: 'inProgress' },
    });
    expect(asm.inProgress).toBe(0);
    expect(addAll(asm, cs).map((r) => r.kind === 'conflict' && r.conflict.found)).toEqual(Array(5).fill('again'));
    // another attempt of the same tensor is another tensor
    const next = chunks(data).map((c) => ({ ...c, header: { ...c.header, attempt: 1 } }));
    expect(addAll(asm, next).at(-1)?.kind).toBe('complete');
  });

  it('the forge fault makes such a copy: one value changed, a checksum that matches, the same header otherwise', () => {
    const frame = encodeTensor(head, data, 4096)[1];
    const copy = forgedCopy(frame)!;
    const a = decodeTensorChunk(frame);
    const b = decodeTensorChunk(copy);
    if (!a.ok || !b.ok) throw new Error('does not decode');
    expect({ ...b.value.header, crc32: 0 }).toEqual({ ...a.value.header, crc32: 0 });
    const [x, y] = [new Float32Array(a.value.data.slice().buffer), new Float32Array(b.value.data.slice().buffer)];
    expect([...y].filter((v, i) => v !== x[i]).length).toBe(1);
    expect(y[0]).not.toBe(x[0]);
    const asm = new TensorAssembler(() => 5000);
    asm.add(a.value, 0);
    expect(asm.add(b.value, 0)).toMatchObject({ kind: 'conflict', conflict: { chunk: 1, element: 1024 } });
  });

  it('keeps completed tensors within a count and a byte bound (the newest always), oldest first; one forgotten is new again', () => {
    const kept = new CompletedTensors(3, 1000);
    for (let i = 0; i < 5; i++) kept.add(`t${i}`, new Uint8Array(100), 1);
    expect([kept.size, kept.keptBytes]).toEqual([3, 300]);
    expect(kept.get('t1')).toBeUndefined();
    kept.add('big', new Uint8Array(950), 1);
    expect([kept.size, kept.keptBytes]).toEqual([1, 950]);
    kept.add('huge', new Uint8Array(5000), 1); // alone over the bound: kept, the rest goes
    expect([kept.size, kept.keptBytes]).toEqual([1, 5000]);
    kept.markConflict('huge'); // in conflict, its bytes are let go
    expect([kept.size, kept.keptBytes, kept.get('huge')]).toEqual([1, 0, 'conflict']);

    const asm = new TensorAssembler(() => 5000, 64, { tensors: 2 });
    const step = (s: number) => chunks(data).map((c) => ({ ...c, header: { ...c.header, step: s } }));
    for (let s = 0; s < 3; s++) addAll(asm, step(s));
    expect(asm.add(step(2)[0], 0).kind).toBe('duplicate');
    expect(asm.add(step(0)[0], 0).kind).toBe('partial'); // forgotten: a new tensor (its receiver rejects it as stale)
  });
});

describe('authorize', () => {
  const data = { on: 'host.data' as const, pod: 0, host: 1, pods: 2, hosts: 4 };
  it.each([
    [{ on: 'pod.cmd', pod: 0 }, 'step.commit', 'client', undefined, undefined],
    [{ on: 'pod.cmd', pod: 0 }, 'step.commit', 'host/0/0', undefined, 'forged sender'],
    [{ on: 'pod.cmd', pod: 0 }, 'host.prepared', 'client', undefined, 'wrong subject'],
    [{ on: 'pod.report', pod: 0, hosts: 4 }, 'host.prepared', 'host/1/0', undefined, 'forged sender'],
    [{ on: 'pod.report', pod: 0, hosts: 4 }, 'host.prepared', 'host/0/3', undefined, undefined],
    [{ on: 'host.cmd', pod: 1, host: 0 }, 'host.commit', 'pod/0', undefined, 'forged sender'],
    [{ on: 'client.report', pods: 2 }, 'pod.prepared', 'pod/2', undefined, 'forged sender'],
    [data, 'tensor.chunk', 'host/0/2', { tensor: 'grad.slice', shard: 1 }, undefined],
    [data, 'tensor.chunk', 'host/0/2', { tensor: 'grad.slice', shard: 2 }, 'bad shard'],
    [data, 'tensor.chunk', 'host/1/2', { tensor: 'grad.slice', shard: 1 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/1/1', { tensor: 'grad.exchange', shard: 1 }, undefined],
    [data, 'tensor.chunk', 'host/1/2', { tensor: 'grad.exchange', shard: 1 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'param.shard', shard: 3 }, undefined],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'param.shard', shard: 2 }, 'bad shard'],
    // a host asks again only the peer that sends it that tensor
    [data, 'tensor.request', 'host/0/2', { tensor: 'grad.slice' }, undefined],
    [data, 'tensor.request', 'host/0/2', { tensor: 'param.shard' }, undefined],
    [data, 'tensor.request', 'host/1/1', { tensor: 'grad.exchange' }, undefined],
    [data, 'tensor.request', 'host/0/2', { tensor: 'grad.exchange' }, 'forged sender'],
    [data, 'tensor.request', 'host/1/1', { tensor: 'grad.slice' }, 'forged sender'],
    [data, 'tensor.request', 'host/0/1', { tensor: 'param.shard' }, 'forged sender'],
    [data, 'tensor.request', 'pod/0', { tensor: 'grad.slice' }, 'forged sender'],
    [{ on: 'host.cmd', pod: 0, host: 1 }, 'tensor.request', 'host/0/2', { tensor: 'grad.slice' }, 'wrong subject'],
    // chain collectives (host 1 of 4): the running sum and the prefix only from host 0; the reduced shard and the whole
    // parameters only from the last host (3); asked for again only by host 2 (the next), or of the last host
    [data, 'tensor.chunk', 'host/0/0', { tensor: 'grad.partial', shard: 0 }, undefined],
    [data, 'tensor.chunk', 'host/0/2', { tensor: 'grad.partial', shard: 2 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/1/0', { tensor: 'grad.partial', shard: 0 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/0/0', { tensor: 'grad.partial', shard: 1 }, 'bad shard'],
    [data, 'tensor.chunk', 'host/0/0', { tensor: 'param.prefix', shard: 0 }, undefined],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'param.prefix', shard: 3 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'grad.reduced', shard: 1 }, undefined],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'grad.reduced', shard: 3 }, 'bad shard'],
    [data, 'tensor.chunk', 'host/0/2', { tensor: 'grad.reduced', shard: 1 }, 'forged sender'],
    [data, 'tensor.chunk', 'host/0/3', { tensor: 'param.full', shard: 3 }, undefined],
    [data, 'tensor.chunk', 'host/0/0', { tensor: 'param.full', shard: 0 }, 'forged sender'],
    [data, 'tensor.request', 'host/0/2', { tensor: 'grad.partial' }, undefined],
    [data, 'tensor.request', 'host/0/0', { tensor: 'grad.partial' }, 'forged sender'],
    [data, 'tensor.request', 'host/0/2', { tensor: 'param.full' }, 'forged sender'],
    [{ ...data, host: 3 }, 'tensor.request', 'host/0/2', { tensor: 'param.full' }, undefined],
    [{ ...data, host: 3 }, 'tensor.request', 'host/0/0', { tensor: 'grad.reduced' }, undefined],
    // healing: host h of another pod asks for the state; another pod says its host h heals
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/1/1', undefined, undefined],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/1/0', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/0/0', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'pod/1', undefined, 'forged sender'],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/1', undefined, undefined],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/0', undefined, 'forged sender'],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/2', undefined, 'forged sender'],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'host/1/1', undefined, 'forged sender'],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'client', undefined, 'forged sender'],
    [{ on: 'host.cmd', pod: 0, host: 1 }, 'heal.expect', 'pod/1', undefined, 'wrong subject'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/1', undefined, 'wrong subject'],
    [{ on: 'host.expect', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/1/1', undefined, 'wrong subject'],
  ] as const)('%j %s from %s %j -> %s', (channel, kind, sender, tensor, reason) => {
    expect(authorize(channel as never, kind, sender, tensor as never)?.reason).toBe(reason);
  });
});

describe('dedup window', () => {
  it('sees each id once and forgets the oldest past capacity', () => {
    const d = new DedupWindow(2);
    expect([d.firstTime('a'), d.firstTime('a'), d.firstTime('b'), d.firstTime('c'), d.firstTime('a')]).toEqual([
      true,
      false,
      true,
      true,
      true,
    ]);
  });
});
