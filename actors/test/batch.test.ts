import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ANY, encodeControl, subjects } from '@lockstep/topology';
import {
  ProcessWire,
  decodeBatch,
  edge,
  encodeBatch,
  inPodReceiver,
  natsTransport,
  systemClock,
  type Transport,
  type WireEvent,
} from '../src/index.ts';
import { edgeHost, quietLog, startNatsServer, until } from './helpers.ts';

const RUN = 'batch-test';
/** Pod 0 of 4 hosts, two a process: processes h0 (hosts 0, 1) and h2 (hosts 2, 3). */
const T = { hostsPerPod: 4, hostsPerProcess: 2 };

/** Process `self` of pod 0 (see T), its batch frames on `nc`, started. */
function processWire(self: string, nc: NatsConnection) {
  return new ProcessWire({ runId: RUN, topology: T, pod: 0, self, remote: natsTransport(nc, quietLog), log: quietLog }).start();
}

/** Host h of pod 0 with its edge on `transport`: records what its edge hands it; `send` goes out through the edge. */
function host(h: number, transport: Transport, received: WireEvent[]) {
  const wire = edge({
    transport,
    clock: systemClock,
    runId: RUN,
    log: quietLog,
    chunkBytes: 4096,
    maxControlBytes: 1024,
    expectedLength: (tensor, shard) => (tensor === 'grad.slice' && shard === h ? 3 : undefined),
    listen: [{ subject: subjects.hostData(RUN, 0, h, ANY, ANY), channel: { on: 'host.data', pod: 0, host: h, pods: 2, hosts: 4 } }],
    batchTensors: queueMicrotask,
  });
  return edgeHost(wire, received);
}

const slice = (from: number, to: number, step: number) =>
  ({
    type: 'wire.sendTensor',
    via: true,
    subject: subjects.hostData(RUN, 0, to, 0, from),
    head: { runId: RUN, step, attempt: 0, sender: `host/0/${from}`, msgId: `g${from}.${to}`, tensor: 'grad.slice', shard: to },
    data: Float32Array.from([from, to, step]),
  }) as never;

describe('batch frames', () => {
  it('round-trip a frame; refuse what is not one, naming why', () => {
    const entries = [
      { subject: 'x', bytes: new Uint8Array(0) },
      { subject: 'a.b.c', bytes: Uint8Array.from([1, 2, 3]) },
    ];
    const d = decodeBatch(encodeBatch(entries));
    expect(d.ok && d.entries.map((e) => [e.subject, [...e.bytes]])).toEqual([
      ['x', []],
      ['a.b.c', [1, 2, 3]],
    ]);
    const frame = encodeBatch(entries);
    expect(decodeBatch(frame.subarray(0, frame.length - 1))).toMatchObject({ ok: false, reason: expect.stringMatching(/past the frame/) });
    expect(decodeBatch(Uint8Array.from([...frame, 0]))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/after the last message/),
    });
    expect(decodeBatch(new TextEncoder().encode('not a frame at all'))).toMatchObject({ ok: false, reason: 'not a batch frame' });
    const zero = Uint8Array.from(frame);
    zero.set([0, 0, 0, 0], 4);
    expect(decodeBatch(zero)).toMatchObject({ ok: false, reason: expect.stringMatching(/count 0/) });
  });

  it('only in-pod subjects between two processes are batched: never the cross-pod exchange, pings or healing', () => {
    expect(inPodReceiver(T, 0, subjects.hostData(RUN, 0, 3, 0, 0))).toBe('h2');
    expect(inPodReceiver(T, 0, subjects.hostCmd(RUN, 0, 1))).toBe('h0');
    expect(inPodReceiver(T, 0, subjects.podReport(RUN, 0, 3))).toBe('pod');
    expect(inPodReceiver(T, 0, subjects.hostData(RUN, 1, 3, 0, 3))).toBeUndefined(); // exchange to pod 1
    expect(inPodReceiver(T, 0, subjects.hostData(RUN, 0, 3, 1, 3))).toBeUndefined(); // exchange from pod 1
    expect(inPodReceiver(T, 0, subjects.hostPing(RUN, 1, 3, 0))).toBeUndefined();
    expect(inPodReceiver(T, 0, subjects.hostHeal(RUN, 0, 3, 1))).toBeUndefined();
    expect(inPodReceiver(T, 0, subjects.clientReport(RUN, 0))).toBeUndefined();
    expect(inPodReceiver(T, 0, subjects.hostData(RUN, 0, 9, 0, 0))).toBeUndefined(); // no such host
  });
});

describe('two processes of a pod over a real nats-server (ProcessWire)', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection[] = [];
  let observer: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = [await connect({ servers: server.url }), await connect({ servers: server.url })];
    observer = await connect({ servers: server.url });
  });
  afterAll(async () => {
    for (const c of nc) await c.close();
    await observer?.close();
    await server?.stop();
  });

  it("one turn's slices from a process to another travel as one NATS message, arrive whole, and reach the edge as one burst", async () => {
    const onServer: string[] = [];
    observer.subscribe(`${subjects.root(RUN)}.>`, { callback: (_e, m) => void onServer.push(m.subject) });
    await observer.flush();
    const a = processWire('h0', nc[0]);
    const b = processWire('h2', nc[1]);
    const got: WireEvent[][] = [[], [], [], []];
    const hosts = [0, 1, 2, 3].map((h) => host(h, (h < 2 ? a : b).transport(), got[h]));
    await Promise.all(nc.map((c) => c.flush()));
    // hosts 0 and 1 each send hosts 2 and 3 their slices in the same turn: four tensors, one frame
    for (const from of [0, 1]) for (const to of [2, 3]) hosts[from].send(slice(from, to, 5));
    await until(() => got[2].length + got[3].length >= 2 && onServer.length >= 1);
    await Promise.all([...nc, observer].map((c) => c.flush()));
    expect(onServer).toEqual([subjects.batch(RUN, 0, 'h2', 'h0')]);
    expect(a.framesOut).toBe(1);
    expect(a.messagesBatched).toBe(4);
    for (const to of [2, 3]) {
      expect(got[to]).toHaveLength(1); // one event for both tensors
      const e = got[to][0];
      expect(e.type === 'tensors.received' && e.tensors.map((t) => [t.sender, ...t.data])).toEqual([
        ['host/0/0', 0, to, 5],
        ['host/0/1', 1, to, 5],
      ]);
    }
    for (const h of hosts) h.stop();
    a.stop();
    b.stop();
  });

  it("a frame's messages meet the receiving edges' checks, and a process cannot speak in a frame for another's hosts", async () => {
    const b = processWire('h2', nc[1]);
    const got: WireEvent[] = [];
    const h2 = host(2, b.transport(), got);
    await nc[1].flush();
    const request = (sender: string, msgId: string) =>
      encodeControl({
        v: 1,
        kind: 'tensor.request',
        runId: RUN,
        step: 1,
        attempt: 0,
        sender,
        msgId,
        tensor: 'grad.slice',
        round: 1,
      } as never);
    const frame = encodeBatch([
      { subject: subjects.hostData(RUN, 0, 2, 0, 1), bytes: request('host/0/1', 'r1') }, // host 1 is process h0's: taken
      { subject: subjects.hostData(RUN, 0, 2, 0, 1), bytes: request('host/0/1', 'r1') }, // a repeat: the edge's duplicate
      { subject: subjects.hostData(RUN, 0, 2, 0, 1), bytes: request('host/0/0', 'r2') }, // sender not its subject's: the edge's forged sender
      { subject: subjects.hostData(RUN, 0, 2, 0, 3), bytes: request('host/0/3', 'r3') }, // host 3 is not h0's: refused by the wire
      { subject: subjects.hostData(RUN, 0, 0, 0, 1), bytes: request('host/0/1', 'r4') }, // not for this process: refused
    ]);
    nc[0].publish(subjects.batch(RUN, 0, 'h2', 'h0'), frame);
    nc[0].publish(subjects.batch(RUN, 0, 'h2', 'h0'), new TextEncoder().encode('garbage'));
    await nc[0].flush();
    await until(() => got.length >= 3 && Object.values(b.rejected).reduce((x, y) => x + y, 0) >= 3);
    expect(got.map((e) => (e.type === 'wire.rejected' ? `rejected: ${e.reason}` : e.type))).toEqual([
      'tensor.request',
      'wire.duplicate',
      'rejected: forged sender',
    ]);
    expect(b.rejected).toEqual({ 'forged sender': 1, 'batch: not for this process': 1, 'malformed batch': 1 });
    h2.stop();
    b.stop();
  });
});
