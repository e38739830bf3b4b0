import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createActor, setup, sendTo, type AnyActorRef } from 'xstate';
import { pino, type Logger } from 'pino';
import { ANY, FaultSpec, encodeControl, encodeTensor, subjects } from '@lockstep/topology';
import { FaultPlan, edge, natsTransport, systemClock, type WireCommand, type WireEvent } from '../src/index.ts';
import { quietLog, startNatsServer } from './helpers.ts';

const RUN = 'edge-test';

/** A minimal machine around an edge: records what the edge hands it, forwards sends to it. */
function harness(nc: NatsConnection, received: WireEvent[], log: Logger = quietLog) {
  const wire = edge({
    transport: natsTransport(nc, quietLog),
    clock: systemClock,
    runId: RUN,
    log,
    chunkBytes: 4096,
    maxControlBytes: 1024,
    expectedLength: (tensor, shard) => (tensor === 'grad.slice' && shard === 0 ? 3000 : undefined),
    listen: [
      { subject: subjects.hostData(RUN, 0, 0, ANY, ANY), channel: { on: 'host.data', pod: 0, host: 0, pods: 2, hosts: 2 } },
      { subject: subjects.hostCmd(RUN, 0, 0), channel: { on: 'host.cmd', pod: 0, host: 0 } },
    ],
  });
  const m = setup({ types: { events: {} as WireEvent | (WireCommand & { via: true }) }, actors: { wire } }).createMachine({
    invoke: { id: 'wire', src: 'wire' },
    on: {
      // commands (marked `via`) go out through the edge; everything else is what the edge handed us
      '*': [
        { guard: ({ event }) => 'via' in event, actions: sendTo('wire', ({ event }) => event as WireCommand) },
        { actions: ({ event }) => received.push(event as WireEvent) },
      ],
    },
  });
  return createActor(m).start() as unknown as AnyActorRef;
}

/** A peer that only sends: the tensors it is given go out through its own edge on `nc` (with `faults`, if any). */
function sendingPeer(nc: NatsConnection, o: { chunkBytes: number; faults?: FaultPlan }) {
  const wire = edge({
    transport: natsTransport(nc, quietLog),
    clock: systemClock,
    runId: RUN,
    log: quietLog,
    chunkBytes: o.chunkBytes,
    maxControlBytes: 1024,
    listen: [],
    faults: o.faults,
  });
  return createActor(
    setup({ actors: { wire } }).createMachine({
      invoke: { id: 'wire', src: 'wire' },
      // sends go out; what the edge says back (wire.faultInjected) stays here
      on: { 'wire.sendTensor': { actions: sendTo('wire', ({ event }) => event as WireCommand) } },
    }),
  ).start();
}

describe('the edge over NATS (natsTransport) against a real nats-server', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('delivers a chunked tensor whole, and turns garbage into counted rejections', async () => {
    const received: WireEvent[] = [];
    const host = harness(nc, received);
    const sender = await connect({ servers: server.url });
    const peer = sendingPeer(sender, { chunkBytes: 4096 });
    await nc.flush();
    const data = Float32Array.from({ length: 3000 }, (_, i) => i / 7);
    const sentAt = systemClock.now();
    peer.send({
      type: 'wire.sendTensor',
      subject: subjects.hostData(RUN, 0, 0, 0, 1),
      head: { runId: RUN, step: 2, attempt: 0, sender: 'host/0/1', msgId: 'g', tensor: 'grad.slice', shard: 0 },
      data,
    } as never);
    sender.publish(subjects.hostCmd(RUN, 0, 0), new TextEncoder().encode('not json'));
    sender.publish(
      subjects.hostCmd(RUN, 0, 0),
      new TextEncoder().encode(
        JSON.stringify({ v: 1, runId: RUN, step: 0, attempt: 0, sender: 'client', msgId: 'z', kind: 'host.commit' }),
      ),
    );
    await sender.flush();
    const until = Date.now() + 5000;
    while (received.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    // a step tensor goes to the machine in a burst (tensors.received), here of one
    const tensor = received.find((e) => e.type === 'tensors.received');
    expect(tensor && tensor.type === 'tensors.received' && tensor.tensors.map((x) => [...x.data])).toEqual([[...data]]);
    expect(
      received
        .filter((e) => e.type === 'wire.rejected')
        .map((e) => (e as { reason: string }).reason)
        .sort(),
    ).toEqual(['forged sender', 'malformed']);
    // every event is stamped with when it reached the edge, on the clock the edge was given
    for (const e of received) {
      expect(e.at).toBeGreaterThanOrEqual(sentAt);
      expect(e.at).toBeLessThanOrEqual(systemClock.now());
    }
    peer.stop();
    host.stop();
    await sender.close();
  });

  it('a second copy of a tensor that differs (the forge fault) is an alarm: logged as an error, handed over as tensor.conflict; the same bytes twice stay a duplicate', async () => {
    const received: WireEvent[] = [];
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const host = harness(nc, received, log);
    const sender = await connect({ servers: server.url });
    const faults = new FaultPlan(
      FaultSpec.parse({
        seed: 1,
        rules: [
          { action: 'forge', probability: 1, kinds: ['grad.slice'], steps: { from: 3, to: 3 } },
          { action: 'duplicate', probability: 1, steps: { from: 4, to: 4 } },
        ],
      }),
      'host',
    );
    // the whole tensor in one chunk: the first copy is complete before the second comes
    const peer = sendingPeer(sender, { chunkBytes: 16_384, faults });
    await nc.flush();
    const data = Float32Array.from({ length: 3000 }, (_, i) => i / 3);
    const send = (step: number) =>
      peer.send({
        type: 'wire.sendTensor',
        subject: subjects.hostData(RUN, 0, 0, 0, 1),
        head: { runId: RUN, step, attempt: 1, sender: 'host/0/1', msgId: `g${step}`, tensor: 'grad.slice', shard: 0 },
        data,
      } as never);
    send(3);
    send(4);
    await sender.flush();
    const until = Date.now() + 5000;
    while (received.length < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(received.map((e) => `${e.type} ${'tensors' in e ? e.tensors[0].step : 'conflict' in e ? e.conflict.step : ''}`)).toEqual([
      'tensors.received 3',
      'tensor.conflict 3',
      'tensors.received 4',
      'wire.duplicate ',
    ]);
    const [delivered, conflict] = received;
    expect(delivered.type === 'tensors.received' && [...delivered.tensors[0].data]).toEqual([...data]); // the first copy, the real one
    expect(conflict).toMatchObject({
      type: 'tensor.conflict',
      conflict: { sender: 'host/0/1', step: 3, attempt: 1, tensor: 'grad.slice', shard: 0, chunk: 0, element: 0, found: 'complete' },
    });
    expect(lines).toEqual([
      expect.objectContaining({
        level: 50,
        msg: 'tensor copies differ',
        sender: 'host/0/1',
        step: 3,
        attempt: 1,
        tensor: 'grad.slice',
        shard: 0,
        chunk: 0,
        msgId: 'g3#0',
      }),
    ]);
    peer.stop();
    host.stop();
    await sender.close();
  });

  it('a message whose sender is not the one its subject names is rejected as forged, before de-duplication: the genuine one still arrives', async () => {
    const received: WireEvent[] = [];
    const host = harness(nc, received);
    const sender = await connect({ servers: server.url });
    await nc.flush();
    const data = Float32Array.from({ length: 3000 }, (_, i) => i / 3);
    const head: Parameters<typeof encodeTensor>[0] = {
      v: 1,
      kind: 'tensor.chunk',
      runId: RUN,
      step: 2,
      attempt: 0,
      sender: 'host/0/1',
      msgId: 'slice',
      tensor: 'grad.slice',
      shard: 0,
    };
    const frames = (d: Float32Array) => encodeTensor(head, d, 4096);
    // host/1/0 (on its own data subject, as its NATS user must) sends a grad.slice naming host/0/1, ahead of the genuine one
    for (const f of frames(new Float32Array(3000).fill(666))) sender.publish(subjects.hostData(RUN, 0, 0, 1, 0), f);
    // and a tensor.request, a control message, the same way
    sender.publish(
      subjects.hostData(RUN, 0, 0, 1, 0),
      encodeControl({
        v: 1,
        runId: RUN,
        step: 2,
        attempt: 0,
        sender: 'host/0/1',
        msgId: 'req',
        kind: 'tensor.request',
        tensor: 'param.shard',
        round: 1,
      }),
    );
    // then the genuine slice, with the same ids, on host/0/1's subject
    for (const f of frames(data)) sender.publish(subjects.hostData(RUN, 0, 0, 0, 1), f);
    await sender.flush();
    const until = Date.now() + 5000;
    while (!received.some((e) => e.type === 'tensors.received') && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const rejected = received.filter((e) => e.type === 'wire.rejected') as Extract<WireEvent, { type: 'wire.rejected' }>[];
    expect(rejected.length).toBe(frames(data).length + 1);
    expect(new Set(rejected.map((e) => e.reason))).toEqual(new Set(['forged sender']));
    expect(rejected[0].detail).toMatch(/grad\.slice from host\/0\/1 on a subject of host\/1\/0/);
    expect(rejected.at(-1)?.detail).toMatch(/tensor\.request from host\/0\/1 on a subject of host\/1\/0/);
    const tensors = received.flatMap((e) => (e.type === 'tensors.received' ? e.tensors : []));
    expect(tensors).toHaveLength(1);
    expect([...tensors[0].data]).toEqual([...data]);
    expect(received.some((e) => e.type === 'wire.duplicate')).toBe(false);
    host.stop();
    await sender.close();
  });

  it('a flood of junk is rejected and counted message for message, but logged at a bounded rate: each line carries its count', async () => {
    const received: WireEvent[] = [];
    const lines: { msg: string; reason: string; count: number }[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const host = harness(nc, received, log);
    const sender = await connect({ servers: server.url });
    await nc.flush();
    const junk = 20_000;
    const started = Date.now();
    for (let i = 0; i < junk; i++) sender.publish(subjects.hostData(RUN, 0, 0, 1, 0), new TextEncoder().encode(`junk ${i}`));
    await sender.flush();
    const until = Date.now() + 60_000;
    while (received.length < junk && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const seconds = (Date.now() - started) / 1000;
    host.stop(); // the edge closes: what is still counted is said
    expect(received.length).toBe(junk);
    expect(received.every((e) => e.type === 'wire.rejected' && e.reason === 'malformed')).toBe(true);
    // one line at once, then at most one a second, and one at close (today: one line a message)
    expect(lines.length).toBeLessThanOrEqual(2 + Math.ceil(seconds));
    expect(lines.every((l) => l.reason === 'malformed')).toBe(true);
    expect(lines[0]).toMatchObject({ msg: 'message rejected', count: 1 });
    expect(lines.reduce((n, l) => n + l.count, 0)).toBe(junk);
    await sender.close();
  }, 60_000);
});
