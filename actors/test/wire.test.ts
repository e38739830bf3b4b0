import { describe, expect, it } from 'vitest';
import { encodeTensor, type TensorChunk, decodeTensorChunk } from '@lockstep/topology';
import { DedupWindow, TensorAssembler, authorize } from '../src/index.ts';

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
    // healing: host h of another pod asks for the state; another pod says its host h heals
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/1/1', undefined, undefined],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/1/0', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'host/0/0', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'state.request', 'pod/1', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/1', undefined, undefined],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/0', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'pod/2', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'host/1/1', undefined, 'forged sender'],
    [{ on: 'host.state', pod: 0, host: 1, pods: 2 }, 'heal.expect', 'client', undefined, 'forged sender'],
    [{ on: 'host.cmd', pod: 0, host: 1 }, 'heal.expect', 'pod/1', undefined, 'wrong subject'],
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
