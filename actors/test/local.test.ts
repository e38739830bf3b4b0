import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ANY, FaultSpec, encodeControl, subjects } from '@lockstep/topology';
import { FaultPlan, LocalBus, edge, natsTransport, subjectMatches, systemClock, type Transport, type WireEvent } from '../src/index.ts';
import { edgeHost, quietLog, startNatsServer, until } from './helpers.ts';

const RUN = 'local-test';

/** Host h of pod 0 with its edge on `transport`: records what its edge hands it; `send` goes out through the edge. */
function host(h: number, transport: Transport, received: WireEvent[], faults?: FaultPlan) {
  const wire = edge({
    transport,
    clock: systemClock,
    runId: RUN,
    log: quietLog,
    chunkBytes: 4096,
    maxControlBytes: 1024,
    faults,
    expectedLength: (tensor, shard) => (tensor === 'grad.slice' && shard === h ? 3000 : undefined),
    listen: [{ subject: subjects.hostData(RUN, 0, h, ANY, ANY), channel: { on: 'host.data', pod: 0, host: h, pods: 2, hosts: 2 } }],
  });
  return edgeHost(wire, received);
}

describe('subjectMatches', () => {
  it('matches NATS wildcards: * one token, > the rest', () => {
    expect(subjectMatches('a.*.c', 'a.b.c')).toBe(true);
    expect(subjectMatches('a.*.c', 'a.b.d')).toBe(false);
    expect(subjectMatches('a.*', 'a.b.c')).toBe(false);
    expect(subjectMatches('a.>', 'a.b.c')).toBe(true);
    expect(subjectMatches('a.>', 'a')).toBe(false);
    expect(subjectMatches('a.b', 'a.b')).toBe(true);
  });
});

describe('hosts of one process (LocalBus) over a real nats-server', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  let observer: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    observer = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await observer?.close();
    await server?.stop();
  });

  it("a tensor between two hosts of the process is whole at the receiver's edge and never on the NATS server; what has no receiver here goes to NATS", async () => {
    const onServer: string[] = [];
    observer.subscribe(`${subjects.root(RUN)}.>`, { callback: (_e, m) => void onServer.push(m.subject) });
    await observer.flush();
    const bus = new LocalBus();
    const [got0, got1]: WireEvent[][] = [[], []];
    const h0 = host(0, bus.transport(natsTransport(nc, quietLog)), got0);
    const h1 = host(1, bus.transport(natsTransport(nc, quietLog)), got1);
    await nc.flush();
    const data = Float32Array.from({ length: 3000 }, (_, i) => i / 7);
    h1.send({
      type: 'wire.sendTensor',
      via: true,
      subject: subjects.hostData(RUN, 0, 0, 0, 1),
      head: { runId: RUN, step: 3, attempt: 0, sender: 'host/0/1', msgId: 'g', tensor: 'grad.slice', shard: 0 },
      data,
    } as never);
    // a subject whose receiver (host 0 of pod 1) is not in this process
    h0.send({
      type: 'wire.sendTensor',
      via: true,
      subject: subjects.hostData(RUN, 1, 0, 0, 0),
      head: { runId: RUN, step: 3, attempt: 0, sender: 'host/0/0', msgId: 'x', tensor: 'grad.exchange', shard: 0 },
      data,
    } as never);
    await until(() => got0.some((e) => e.type === 'tensors.received') && onServer.length >= 3);
    await nc.flush();
    await observer.flush();
    const t = got0.find((e) => e.type === 'tensors.received');
    expect(t?.type === 'tensors.received' && t.tensors.map((x) => [...x.data])).toEqual([[...data]]);
    // one event for the whole tensor (3 chunks of 4096 bytes), none a chunk
    expect(got0.map((e) => e.type)).toEqual(['tensors.received']);
    // only the exchange went through the server: its 3 chunks
    expect(onServer).toEqual(Array(3).fill(subjects.hostData(RUN, 1, 0, 0, 0)));
    h0.stop();
    h1.stop();
  });

  it("a message in memory meets the receiving edge's checks: a forged sender and a wrong run are rejected, a repeat is a duplicate", async () => {
    const bus = new LocalBus();
    const got: WireEvent[] = [];
    const h0 = host(0, bus.transport(natsTransport(nc, quietLog)), got);
    // a peer in the process that publishes raw bytes on host 0's subjects, as a faulty or hostile actor could
    const raw = bus.transport(natsTransport(nc, quietLog));
    const request = (sender: string, runId: string, msgId: string) =>
      encodeControl({ v: 1, kind: 'tensor.request', runId, step: 1, attempt: 0, sender, msgId, tensor: 'grad.slice', round: 1 } as never);
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), request('host/0/1', RUN, 'r1'));
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), request('host/0/1', RUN, 'r1'));
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), request('host/1/1', RUN, 'r2')); // names another sender than its subject
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), request('host/0/1', 'another-run', 'r3'));
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), new TextEncoder().encode('not json'));
    await until(() => got.length >= 5);
    expect(got.map((e) => (e.type === 'wire.rejected' ? `rejected: ${e.reason}` : e.type))).toEqual([
      'tensor.request',
      'wire.duplicate',
      'rejected: forged sender',
      'rejected: wrong run',
      'rejected: malformed',
    ]);
    h0.stop();
    // a stopped receiver gets nothing more, and its subject is no longer taken in memory
    raw.publish(subjects.hostData(RUN, 0, 0, 0, 1), request('host/0/1', RUN, 'r4'));
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toHaveLength(5);
    expect(bus.publish(subjects.hostData(RUN, 0, 0, 0, 1), new Uint8Array(1))).toBe(false);
  });

  it("the sender's fault layer applies in memory too: a dropped tensor never reaches the other host", async () => {
    const bus = new LocalBus();
    const [got0, got1]: WireEvent[][] = [[], []];
    const drop = new FaultPlan(FaultSpec.parse({ seed: 1, rules: [{ action: 'drop', probability: 1, kinds: ['grad.slice'] }] }), 'host');
    const h0 = host(0, bus.transport(natsTransport(nc, quietLog)), got0);
    const h1 = host(1, bus.transport(natsTransport(nc, quietLog)), got1, drop);
    h1.send({
      type: 'wire.sendTensor',
      via: true,
      subject: subjects.hostData(RUN, 0, 0, 0, 1),
      head: { runId: RUN, step: 3, attempt: 0, sender: 'host/0/1', msgId: 'g', tensor: 'grad.slice', shard: 0 },
      data: new Float32Array(3000),
    } as never);
    await until(() => got1.some((e) => e.type === 'wire.faultInjected'));
    await new Promise((r) => setTimeout(r, 50));
    expect(got1.filter((e) => e.type === 'wire.faultInjected')).toHaveLength(3); // one a chunk
    expect(got0).toEqual([]);
    h0.stop();
    h1.stop();
  });
});
