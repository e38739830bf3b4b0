import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { createActor, waitFor, type Actor } from 'xstate';
import {
  ANY,
  decodeControl,
  encodeControl,
  initParams,
  isTensorFrame,
  parameterCount,
  parseTopology,
  preset,
  shardRange,
  subjects,
  type ControlMessage,
  type StateDone,
  type Topology,
} from '@lockstep/topology';
import {
  checkpointLoader,
  connectNats,
  edgeFor,
  hostCompute,
  hostDiskActor,
  hostMachine,
  hostTensorLength,
  listenFor,
  natsTransport,
  systemClock,
  ticker,
  totalRejections,
  type Transport,
} from '../src/index.ts';
import { joined, quietLog, startNatsServer } from './helpers.ts';

/**
 * Healing a restarted host from its cross-pod peer, through the host machines
 * themselves: each host has the edge of a real run over a real nats-server,
 * the real clock, compute, disk and checkpoint loader.
 */

// chunks of 4 KiB, so the state crosses the wire in many frames; a heartbeat (and a re-ask) every 50 ms
const base = {
  ...preset('tiny'),
  wire: { chunkBytes: 4096, maxControlBytes: 65536 },
  heartbeat: { intervalMs: 50, misses: 3 },
};
const t: Topology = parseTopology(base);

type HostActor = Actor<typeof hostMachine>;
const running: HostActor[] = [];
const errors: unknown[] = [];

/** The same bits, not just the same values. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** One host as a real run starts it (see host.node.ts), on a transport over `nc` unless one is given. */
function startHost(
  nc: NatsConnection,
  o: {
    topology: Topology;
    runId: string;
    pod: number;
    host: number;
    incarnation: string;
    dir: string;
    heal?: boolean;
    transport?: Transport;
  },
): HostActor {
  const { topology, runId, pod, host } = o;
  const clock = systemClock;
  const place = { dir: o.dir, topology, runId, log: quietLog, clock };
  const wire = edgeFor(topology, 'host', {
    transport: o.transport ?? natsTransport(nc, quietLog),
    clock,
    runId,
    log: quietLog,
    expectedLength: hostTensorLength(topology, host),
    listen: listenFor(topology, runId, { role: 'host', pod, host }),
  });
  const actor = createActor(
    hostMachine.provide({
      actors: {
        wire,
        clock: ticker(clock),
        disk: hostDiskActor(place),
        loadCheckpoint: checkpointLoader(place, host),
        ...hostCompute(clock),
      },
    }),
    { input: { topology, runId, pod, host, incarnation: o.incarnation, heal: o.heal, now: clock.now() }, clock },
  );
  actor.subscribe({ error: (err) => errors.push(err) });
  running.push(actor);
  return actor.start();
}

/**
 * Every host of `topology` over NATS, trained for `steps` steps (the pods' dispatches and commits
 * are sent to the machines directly); `transports` replaces the transport of the hosts it names ("p/h").
 */
async function trainedCluster(
  nc: NatsConnection,
  o: { topology: Topology; runId: string; steps: number; transports?: Map<string, Transport> },
) {
  const { topology, runId } = o;
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-heal-'));
  const hosts = new Map<string, HostActor>();
  for (let pod = 0; pod < topology.pods; pod++)
    for (let host = 0; host < topology.hostsPerPod; host++)
      hosts.set(
        `${pod}/${host}`,
        startHost(nc, { topology, runId, pod, host, incarnation: 'first', dir, transport: o.transports?.get(`${pod}/${host}`) }),
      );
  await nc.flush(); // every host's subscriptions are in place before any of them publishes a tensor
  // every host has reached its cross-pod peer (ping, pong) before the first dispatch, as the pods wait for in a run
  await Promise.all([...hosts.values()].map((a) => waitFor(a, (s) => s.context.phase !== 'joining', { timeout: 5000 })));
  const per = topology.training.globalBatch / (topology.pods * topology.hostsPerPod);
  const envelope = (pod: number, step: number) => ({ v: 1 as const, runId, step, attempt: 0, sender: `pod/${pod}` });
  for (let step = 0; step < o.steps; step++) {
    for (const [key, a] of hosts) {
      const [pod, host] = key.split('/').map(Number);
      const start = (pod * topology.hostsPerPod + host) * per;
      a.send({
        type: 'host.dispatch',
        msg: {
          ...envelope(pod, step),
          msgId: `d/${key}/${step}`,
          kind: 'host.dispatch',
          samples: { start, end: start + per },
          committed: step - 1,
        },
        at: systemClock.now(),
      });
    }
    await Promise.all([...hosts.values()].map((a) => waitFor(a, (s) => s.context.pending.length > 0, { timeout: 10_000 })));
    for (const [key, a] of hosts) {
      const [pod] = key.split('/').map(Number);
      a.send({
        type: 'host.commit',
        msg: { ...envelope(pod, step), msgId: `c/${key}/${step}`, kind: 'host.commit' },
        at: systemClock.now(),
      });
    }
  }
  for (const a of hosts.values()) expect(a.getSnapshot().context).toMatchObject({ phase: 'idle', step: o.steps });
  return { hosts, dir };
}

/** A transport that does `change` to what is published on healing subjects (`*.heal.<sp>`): a fault between the peer and the healer. */
function onHealAnswers(inner: Transport, change: (bytes: Uint8Array) => Uint8Array): Transport {
  return {
    subscribe: (subject, onMessage) => inner.subscribe(subject, onMessage),
    publish: (subject, bytes) => inner.publish(subject, /\.heal\.\d+$/.test(subject) ? change(bytes) : bytes),
  };
}

/**
 * What pod `healing` does while its host `host` heals: on each of that host's heartbeats, it tells host `host` of
 * pod `to` (heal.expect on its expect subject), every heartbeat interval (once with `once`). Returns the stop.
 */
function podSaysHeals(
  nc: NatsConnection,
  o: { topology: Topology; runId: string; to: number; host: number; healing: number; once?: boolean },
): () => void {
  let n = 0;
  const say = () =>
    nc.publish(
      subjects.hostExpect(o.runId, o.to, o.host, o.healing),
      encodeControl({
        v: 1,
        runId: o.runId,
        step: 0,
        attempt: 0,
        sender: `pod/${o.healing}`,
        msgId: `expect/${o.healing}/${o.host}/${n++}`,
        kind: 'heal.expect',
      }),
    );
  say();
  if (o.once) return () => {};
  const timer = setInterval(say, o.topology.heartbeat.intervalMs);
  return () => clearInterval(timer);
}

const stops: (() => void)[] = [];

async function until(what: string, cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('healing a restarted host from its cross-pod peer, through the host machines (real nats-server)', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: 'heal-test', log: quietLog });
  });
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
    for (const a of running.splice(0)) a.stop();
    expect(errors.splice(0)).toEqual([]);
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('host 1 of pod 1, restarted after two steps, gets bitwise the committed parameters and optimizer state host 1 of pod 0 holds', async () => {
    const runId = 'heal-a';
    const { hosts, dir } = await trainedCluster(nc, { topology: t, runId, steps: 2 });
    const peer = hosts.get('0/1')!;
    const want = peer.getSnapshot().context;
    // what is healed is not what a fresh host starts with: the transfer is what makes them equal
    expect(sameBits(want.params, initParams(t.model, t.training.seed))).toBe(false);
    expect(want.lastCommitted).toMatchObject({ step: 1, attempt: 0 });
    const crashed = hosts.get('1/1')!;
    expect(sameBits(crashed.getSnapshot().context.params, want.params)).toBe(true); // lockstep, before the crash
    crashed.stop();

    stops.push(podSaysHeals(nc, { topology: t, runId, to: 0, host: 1, healing: 1 }));
    await nc.flush();
    const healer = startHost(nc, { topology: t, runId, pod: 1, host: 1, incarnation: 'second', dir, heal: true });
    expect(healer.getSnapshot().matches('joining')).toBe(true); // it reaches its cross-pod peer first, then heals from it
    await waitFor(healer, (s) => s.matches('healing'), { timeout: 5000 });
    await waitFor(healer, (s) => s.matches('idle'), { timeout: 5000 });
    const c = healer.getSnapshot().context;
    expect(c.heal.from).toBe('host/0/1');
    expect(c.step).toBe(2); // the step after the last commit
    expect(c.lastCommitted).toEqual(want.lastCommitted);
    expect(sameBits(c.params, want.params)).toBe(true);
    expect(c.optState.length).toBe(want.optState.length);
    for (const [i, o] of c.optState.entries()) expect(sameBits(o, want.optState[i])).toBe(true);
    expect(peer.getSnapshot().context.served).toBeGreaterThanOrEqual(1);
    expect(totalRejections(c.rejected)).toBe(0);
  });

  it('an answer with a corrupted chunk is asked for again, and the host heals from the good copy', async () => {
    const runId = 'heal-b';
    const corrupt = { armed: false, hits: 0 };
    // flips the last byte of the first state chunk host/0/1 publishes once armed (its CRC no longer matches)
    const flipFirstStateChunk = (bytes: Uint8Array) => {
      if (!corrupt.armed || !isTensorFrame(bytes)) return bytes;
      corrupt.armed = false;
      corrupt.hits++;
      const out = Uint8Array.from(bytes);
      out[out.length - 1] ^= 0xff;
      return out;
    };
    const transports = new Map([['0/1', onHealAnswers(natsTransport(nc, quietLog), flipFirstStateChunk)]]);
    const { hosts, dir } = await trainedCluster(nc, { topology: t, runId, steps: 1, transports });
    const peer = hosts.get('0/1')!;
    hosts.get('1/1')!.stop();
    corrupt.armed = true;
    stops.push(podSaysHeals(nc, { topology: t, runId, to: 0, host: 1, healing: 1 }));
    await nc.flush();

    const healer = startHost(nc, { topology: t, runId, pod: 1, host: 1, incarnation: 'second', dir, heal: true });
    await waitFor(healer, (s) => s.matches('idle'), { timeout: 5000 });
    const c = healer.getSnapshot().context;
    expect(corrupt.hits).toBe(1);
    expect(c.rejected).toEqual({ checksum: 1 }); // the corrupted chunk, and nothing else
    expect(c.heal.asks).toBeGreaterThanOrEqual(2); // asked again
    expect(peer.getSnapshot().context.served).toBeGreaterThanOrEqual(2); // and answered again
    expect(c.heal.from).toBe('host/0/1');
    const want = peer.getSnapshot().context;
    expect(sameBits(c.params, want.params)).toBe(true);
    for (const [i, o] of c.optState.entries()) expect(sameBits(o, want.optState[i])).toBe(true);
  });

  it('a peer whose state does not hash to its committed shard hash is not believed: lost at the start-up deadline, saying so', async () => {
    const runId = 'heal-c';
    const quick = parseTopology({ ...base, deadlines: { startupMs: 1500, phaseMs: 30_000, stepMs: 120_000 } });
    // host/0/1 reports a committed shard hash its state does not have (the state's own checksum is intact)
    const lie = (bytes: Uint8Array) => {
      if (isTensorFrame(bytes)) return bytes;
      const d = decodeControl(bytes, quick.wire.maxControlBytes);
      if (!d.ok || d.value.kind !== 'state.done' || !d.value.lastCommitted) return bytes;
      return encodeControl({ ...d.value, lastCommitted: { ...d.value.lastCommitted, shardHash: 'f'.repeat(64) } });
    };
    const transports = new Map([['0/1', onHealAnswers(natsTransport(nc, quietLog), lie)]]);
    const { hosts, dir } = await trainedCluster(nc, { topology: quick, runId, steps: 1, transports });
    hosts.get('1/1')!.stop();
    stops.push(podSaysHeals(nc, { topology: quick, runId, to: 0, host: 1, healing: 1 }));
    await nc.flush();

    const began = performance.now();
    const healer = startHost(nc, { topology: quick, runId, pod: 1, host: 1, incarnation: 'second', dir, heal: true });
    await waitFor(healer, (s) => s.matches('lost'), { timeout: 5000 });
    expect(performance.now() - began).toBeGreaterThanOrEqual(1400);
    const c = healer.getSnapshot().context;
    expect(c.heal.from).toBeUndefined();
    expect(c.heal.answers.get(0)!.round).toBeGreaterThan(1); // each bad answer was asked for again, in a new round
    expect(c.failure).toEqual({
      kind: 'deadline',
      actor: 'host/1/1',
      phase: 'healing',
      ms: 1500,
      waitingFor: 'state.done',
      peers: [{ actor: 'host/0/1' }],
    });
    expect(sameBits(c.params, initParams(quick.model, quick.training.seed))).toBe(true); // nothing of the bad state was adopted
  });

  it('when the only peer is healing too, no replica is left: lost at once (not at the start-up deadline), naming the peer', async () => {
    const runId = 'heal-d';
    const slowDeadline = parseTopology({ ...base, deadlines: { startupMs: 10_000, phaseMs: 30_000, stepMs: 120_000 } });
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-heal-'));
    const reports: ControlMessage[] = [];
    const sub = nc.subscribe(subjects.podReport(runId, 1, ANY), {
      callback: (_err, m) => {
        const d = decodeControl(m.data, 65536);
        if (d.ok) reports.push(d.value);
      },
    });
    try {
      await nc.flush();
      const began = performance.now();
      const a = startHost(nc, { topology: slowDeadline, runId, pod: 0, host: 0, incarnation: 'second', dir, heal: true });
      const b = startHost(nc, { topology: slowDeadline, runId, pod: 1, host: 0, incarnation: 'second', dir, heal: true });
      await Promise.all([a, b].map((h) => waitFor(h, (s) => s.matches('lost'), { timeout: 5000 })));
      expect(performance.now() - began).toBeLessThan(3000);
      // each says why in its peer's own word: healing itself, or (if the peer was quicker) lost already
      const said = expect.stringMatching(/^(healing itself \(restarted, no state yet\)|lost \(no replica was left to heal from\))$/);
      expect(b.getSnapshot().context.failure).toEqual({ kind: 'lost', actor: 'host/1/0', peers: [{ actor: 'host/0/0', said }] });
      expect(a.getSnapshot().context.failure).toEqual({ kind: 'lost', actor: 'host/0/0', peers: [{ actor: 'host/1/0', said }] });
      // and its pod hears it: a heartbeat that says lost
      await until('host/1/0 heartbeats lost', () =>
        reports.some((m) => m.kind === 'host.heartbeat' && m.sender === 'host/1/0' && m.phase === 'lost'),
      );
    } finally {
      sub.unsubscribe();
    }
  });

  it("a flood of state requests under the healing peer's name: none served before its pod says it heals, then one answer per half interval; every other request rejected and counted", async () => {
    const runId = 'heal-e';
    // a heartbeat a second: one answer per 500 ms at most
    const slow = parseTopology({ ...base, heartbeat: { intervalMs: 1000, misses: 3 } });
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-heal-'));
    const peer = joined(startHost(nc, { topology: slow, runId, pod: 0, host: 1, incarnation: 'first', dir })); // its cross-pod peer is the test
    const dones: StateDone[] = [];
    let frames = 0;
    const sub = nc.subscribe(subjects.hostHeal(runId, 1, 1, ANY), {
      callback: (_err, m) => {
        if (isTensorFrame(m.data)) return void frames++;
        const d = decodeControl(m.data, 65536);
        if (d.ok && d.value.kind === 'state.done') dones.push(d.value);
      },
    });
    let r = 0;
    // what any connection with a host's credentials can publish: new ids, new rounds, the peer's name
    const flood = (n: number) => {
      for (let i = 0; i < n; i++) {
        r++;
        nc.publish(
          subjects.hostState(runId, 0, 1, 1),
          encodeControl({
            v: 1,
            runId,
            step: 0,
            attempt: r,
            sender: 'host/1/1',
            msgId: `flood/${r}`,
            kind: 'state.request',
            reqId: `r${r}`,
          }),
        );
      }
    };
    const rejected = () => peer.getSnapshot().context.rejected;
    try {
      await nc.flush();
      const N = 2000;
      // no pod said host/1/1 heals: nothing is served
      flood(N);
      await until(`${N} rejections`, () => totalRejections(rejected()) >= N);
      await nc.flush();
      expect(rejected()).toEqual({ 'state request not expected': N });
      expect(peer.getSnapshot().context.served).toBe(0);

      // its pod says it heals (once, and not again: the word lapses after 3 s): one answer per 500 ms at most
      // (after a second: the last request before the word is too old to answer when it comes)
      await new Promise((res) => setTimeout(res, 1100));
      podSaysHeals(nc, { topology: slow, runId, to: 0, host: 1, healing: 1, once: true });
      await nc.flush();
      await new Promise((res) => setTimeout(res, 100));
      expect(peer.getSnapshot().context.served).toBe(0);
      const began = performance.now();
      flood(N);
      await until(`${N} more handled`, () => peer.getSnapshot().context.served + totalRejections(rejected()) >= 2 * N);
      const took = performance.now() - began;
      const c = peer.getSnapshot().context;
      const most = 1 + Math.floor(took / 500);
      expect(c.served).toBeGreaterThanOrEqual(1);
      expect(c.served).toBeLessThanOrEqual(most);
      expect(rejected()).toEqual({ 'state request not expected': N, 'state request too soon': N - c.served });
      // what it sent is what it served, each answer the whole state: the parameters and every optimizer tensor of shard 1
      const perChunk = slow.wire.chunkBytes / 4;
      const own = shardRange(parameterCount(slow.model), slow.hostsPerPod, 1);
      const framesPerAnswer =
        Math.ceil(parameterCount(slow.model) / perChunk) + c.optState.length * Math.ceil((own.end - own.start) / perChunk);
      await until('every frame of what was served', () => dones.length >= c.served && frames >= c.served * framesPerAnswer);
      await new Promise((res) => setTimeout(res, 200));
      expect(dones.length).toBe(c.served);
      expect(frames).toBe(c.served * framesPerAnswer);
      // what it keeps for this is one slot per pod, whatever came
      expect(c.serving).toHaveLength(slow.pods);
      expect(c.phase).toBe('idle'); // serving changes nothing of its own
    } finally {
      sub.unsubscribe();
    }
  });

  it('a state request from a host of the same pod, of another shard, or from a pod, is not served; the cross-pod peer only once its own pod says it heals', async () => {
    const runId = 'heal-f';
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-heal-'));
    // a heartbeat a second: a request less than a second old is answered when the word comes; one answer per 500 ms
    const slow = parseTopology({ ...base, heartbeat: { intervalMs: 1000, misses: 3 } });
    const peer = joined(startHost(nc, { topology: slow, runId, pod: 0, host: 1, incarnation: 'first', dir })); // its cross-pod peer is the test
    await nc.flush();
    // each on the subject of a state request from host 1 of its pod (pod 1 for the pod): the one host/1/1 would use
    const request = (sender: string, reqId: string) =>
      nc.publish(
        subjects.hostState(runId, 0, 1, Number(sender.split('/')[1])),
        encodeControl({ v: 1, runId, step: 0, attempt: 1, sender, msgId: `${sender}/${reqId}`, kind: 'state.request', reqId }),
      );
    const expectHeal = (sender: string, id: string) =>
      nc.publish(
        subjects.hostExpect(runId, 0, 1, Number(sender.split('/')[1])),
        encodeControl({ v: 1, runId, step: 0, attempt: 0, sender, msgId: id, kind: 'heal.expect' }),
      );
    request('host/0/0', 'a'); // same pod
    request('host/1/0', 'b'); // another shard
    request('pod/1', 'c'); // not a host
    await until('three rejections', () => totalRejections(peer.getSnapshot().context.rejected) >= 3);
    expect(peer.getSnapshot().context.rejected).toEqual({ 'forged sender': 3 });
    request('host/1/1', 'd'); // its cross-pod peer, which no pod said heals
    await until('four rejections', () => totalRejections(peer.getSnapshot().context.rejected) >= 4);
    expect(peer.getSnapshot().context.rejected).toEqual({ 'forged sender': 3, 'state request not expected': 1 });
    // only the peer's own pod may say it heals: not this host's pod, not a pod of no replica, not a host
    expectHeal('pod/0', 'x1');
    expectHeal('pod/2', 'x2');
    expectHeal('host/1/1', 'x3');
    await until('seven rejections', () => totalRejections(peer.getSnapshot().context.rejected) >= 7);
    expect(peer.getSnapshot().context.rejected).toEqual({ 'forged sender': 6, 'state request not expected': 1 });
    expect(peer.getSnapshot().context.served).toBe(0);
    expectHeal('pod/1', 'x4'); // and the request it made just before is answered now
    await until('served once', () => peer.getSnapshot().context.served >= 1);
    request('host/1/1', 'e'); // too soon after that answer
    await until('eight rejections', () => totalRejections(peer.getSnapshot().context.rejected) >= 8);
    expect(peer.getSnapshot().context.served).toBe(1);
    expect(peer.getSnapshot().context.rejected).toMatchObject({ 'state request too soon': 1 });
  });
});
