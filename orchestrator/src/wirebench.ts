import { createServer, connect as tcpConnect, type AddressInfo } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { createActor, sendTo, setup } from 'xstate';
import type { Logger } from 'pino';
import { ANY, subjects } from '@lockstep/topology';
import { edge, natsTransport, systemClock, type WireCommand, type WireEvent } from '@lockstep/actors';

/**
 * The wire under lockstep, measured on its own: a raw Node TCP socket over
 * loopback (what NATS runs on), and one tensor exchange through two real
 * edges across the pods' NATS route (what a host's exchange phase costs
 * without the rest of the step). Figures for `lockstep bench`, not tests.
 */

/** Throughput of one TCP stream over loopback: `megabytes` written in `chunkBytes` writes, honouring backpressure (MiB/s). */
export async function tcpThroughput(opts: { chunkBytes: number; megabytes: number; timeoutMs?: number }): Promise<number> {
  const total = opts.megabytes * 1024 * 1024;
  let received = 0;
  let t0 = 0;
  const server = createServer();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  try {
    const done = new Promise<number>((resolve, reject) => {
      server.on('connection', (s) => {
        s.on('data', (d: Buffer) => {
          received += d.length;
          if (received >= total) resolve(performance.now());
        });
        s.on('error', reject);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const sock = tcpConnect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const payload = Buffer.alloc(opts.chunkBytes);
    t0 = performance.now();
    for (let sent = 0; sent < total; sent += opts.chunkBytes) {
      if (!sock.write(payload)) await new Promise<void>((r) => sock.once('drain', r));
    }
    let timer: NodeJS.Timeout | undefined;
    const end = await Promise.race([
      done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`tcp baseline: ${received} of ${total} bytes in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    sock.destroy();
    return received / (1024 * 1024) / ((end - t0) / 1000);
  } finally {
    server.close();
  }
}

/**
 * Throughput of `rounds` exchanges of a `tensorBytes` gradient shard through
 * two real edges: host 0 of pod 0 publishes it as `grad.exchange` chunks on
 * `from` (pod 0's server), host 0 of pod 1 takes it on `to` (pod 1's server),
 * checks, de-duplicates and reassembles it; the next round starts when the
 * whole tensor is handed to its machine: MiB/s over all rounds, and the CPU
 * time of this process (both edges, their NATS clients) per MiB over the
 * same rounds (ms/MiB; set-up left out).
 */
export async function edgeExchange(opts: {
  from: NatsConnection;
  to: NatsConnection;
  tensorBytes: number;
  chunkBytes: number;
  rounds: number;
  log: Logger;
  timeoutMs?: number;
}): Promise<{ mibps: number; cpuMsPerMiB: number }> {
  const run = 'bench';
  const length = Math.floor(opts.tensorBytes / 4);
  const base = { clock: systemClock, runId: run, log: opts.log, chunkBytes: opts.chunkBytes, maxControlBytes: 65536 };
  const sender = edge({ ...base, transport: natsTransport(opts.from, opts.log), listen: [] });
  const receiver = edge({
    ...base,
    transport: natsTransport(opts.to, opts.log),
    expectedLength: (tensor, shard) => (tensor === 'grad.exchange' && shard === 0 ? length : undefined),
    listen: [{ subject: subjects.hostData(run, 1, 0, ANY, ANY), channel: { on: 'host.data', pod: 1, host: 0, pods: 2, hosts: 1 } }],
  });
  let wake: ((e: WireEvent) => void) | undefined;
  const a = createActor(
    setup({ actors: { wire: sender } }).createMachine({
      invoke: { id: 'wire', src: 'wire' },
      on: { 'wire.sendTensor': { actions: sendTo('wire', ({ event }) => event as WireCommand) } },
    }),
  ).start();
  const b = createActor(
    setup({ types: { events: {} as WireEvent }, actors: { wire: receiver } }).createMachine({
      invoke: { id: 'wire', src: 'wire' },
      on: { '*': { actions: ({ event }) => wake?.(event) } },
    }),
  ).start();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  try {
    await opts.to.flush();
    const data = new Float32Array(length);
    for (let i = 0; i < length; i++) data[i] = i;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let step = 1; step <= opts.rounds; step++) {
      const got = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`edge exchange: round ${step} not received in ${timeoutMs} ms`)), timeoutMs);
        wake = (e) => {
          if (e.type === 'tensors.received' && e.tensors.some((x) => x.step === step)) {
            clearTimeout(timer);
            resolve();
          } else if (e.type === 'wire.rejected' || e.type === 'tensor.conflict') {
            clearTimeout(timer);
            reject(new Error(`edge exchange: ${e.type} ${JSON.stringify(e)}`));
          }
        };
      });
      a.send({
        type: 'wire.sendTensor',
        subject: subjects.hostData(run, 1, 0, 0, 0),
        head: { runId: run, step, attempt: 0, sender: 'host/0/0', msgId: `x${step}`, tensor: 'grad.exchange', shard: 0 },
        data,
      });
      await got;
    }
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const mib = (opts.rounds * length * 4) / (1024 * 1024);
    return { mibps: mib / secs, cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / mib };
  } finally {
    a.stop();
    b.stop();
  }
}
