import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { fromCallback } from 'xstate';
import type { Logger } from 'pino';
import {
  decodeControl,
  decodeTensorChunk,
  encodeControl,
  encodeTensor,
  isTensorFrame,
  type ControlMessage,
  type TensorKind,
  type Topology,
} from '@lockstep/topology';
import { TensorAssembler, type AssembledTensor } from './assembler.ts';
import { authorize, type Channel } from './authorize.ts';
import { DedupWindow } from './dedup.ts';
import { FaultPlan } from './faults.ts';

/** What a machine asks its edge to publish. */
export type WireCommand =
  | { type: 'wire.send'; subject: string; message: ControlMessage }
  | {
      type: 'wire.sendTensor';
      subject: string;
      head: { runId: string; step: number; attempt: number; sender: string; msgId: string; tensor: TensorKind; shard: number };
      data: Float32Array;
    };

/** What an edge tells its machine. Control messages arrive as `{ type: kind, msg }`. */
export type WireEvent =
  | { [K in ControlMessage['kind']]: { type: K; msg: Extract<ControlMessage, { kind: K }> } }[ControlMessage['kind']]
  | { type: 'tensor.received'; tensor: AssembledTensor }
  | { type: 'wire.rejected'; reason: string; detail?: string }
  | { type: 'wire.duplicate'; msgId: string }
  | { type: 'wire.faultInjected'; count: number };

export interface EdgeOptions {
  nc: NatsConnection;
  runId: string;
  listen: { subject: string; channel: Channel }[];
  chunkBytes: number;
  maxControlBytes: number;
  /** For hosts: the element count of a tensor for a shard, or undefined if this host takes none. */
  expectedLength?: (tensor: TensorKind, shard: number) => number | undefined;
  log: Logger;
  /** Seeded faults to inject into what this actor publishes (none when absent). */
  faults?: FaultPlan;
  /** A tensor.request is held back while chunks of that tensor from that peer came within this many ms (it is only slow). */
  requestQuietMs?: number;
}

/**
 * The NATS edge of an actor: subscribes to its subjects, parses every message
 * with its schema, checks who sent it, drops repeats, reassembles tensors and
 * hands the machine typed events (or `wire.rejected` with the reason). It
 * publishes what the machine sends. The machine never sees raw bytes.
 */
export function natsEdge(opts: EdgeOptions) {
  return fromCallback<WireCommand>(({ sendBack, receive }) => {
    const dedup = new DedupWindow();
    const assembler = new TensorAssembler(opts.expectedLength ?? (() => undefined));
    const reject = (reason: string, detail?: string) => {
      opts.log.warn({ reason, detail }, 'message rejected');
      sendBack({ type: 'wire.rejected', reason, detail });
    };

    const onMessage = (channel: Channel, bytes: Uint8Array) => {
      if (isTensorFrame(bytes)) {
        const d = decodeTensorChunk(bytes);
        if (!d.ok) return reject(d.reason, d.detail);
        const h = d.value.header;
        if (h.runId !== opts.runId) return reject('wrong run', h.runId);
        const denied = authorize(channel, 'tensor.chunk', h.sender, h);
        if (denied) return reject(denied.reason, denied.detail);
        if (!dedup.firstTime(h.msgId)) return sendBack({ type: 'wire.duplicate', msgId: h.msgId });
        const r = assembler.add(d.value);
        if (r.kind === 'rejected') return reject(r.reason, r.detail);
        if (r.kind === 'duplicate') return sendBack({ type: 'wire.duplicate', msgId: h.msgId });
        if (r.kind === 'complete') sendBack({ type: 'tensor.received', tensor: r.tensor });
        return;
      }
      const d = decodeControl(bytes, opts.maxControlBytes);
      if (!d.ok) return reject(d.reason, d.detail);
      const msg = d.value;
      if (msg.runId !== opts.runId) return reject('wrong run', msg.runId);
      const denied = authorize(channel, msg.kind, msg.sender, msg.kind === 'tensor.request' ? { tensor: msg.tensor } : undefined);
      if (denied) return reject(denied.reason, denied.detail);
      if (!dedup.firstTime(msg.msgId)) return sendBack({ type: 'wire.duplicate', msgId: msg.msgId });
      sendBack({ type: msg.kind, msg } as WireEvent);
    };

    const subs: Subscription[] = opts.listen.map(({ subject, channel }) =>
      opts.nc.subscribe(subject, {
        callback: (err, m) => {
          if (err) return opts.log.error({ err, subject }, 'subscription error');
          onMessage(channel, m.data);
        },
      }),
    );

    const held = new Map<string, { bytes: Uint8Array; timer: ReturnType<typeof setTimeout> }>();
    const rawPublish = (subject: string, bytes: Uint8Array) => {
      try {
        opts.nc.publish(subject, bytes);
      } catch (err) {
        opts.log.error({ err, subject }, 'publish failed');
      }
    };
    /** Publish, through the seeded fault layer when one is configured. */
    const publish = (subject: string, bytes: Uint8Array, meta: { kind: string; step: number; msgId: string; tensor: boolean }) => {
      const hits = opts.faults?.active ? opts.faults.decide({ ...meta, subject }) : [];
      if (hits.length === 0) return rawPublish(subject, bytes);
      sendBack({ type: 'wire.faultInjected', count: hits.length });
      opts.log.debug({ subject, kind: meta.kind, msgId: meta.msgId, faults: hits.map((h) => h.action) }, 'fault injected');
      const has = (a: string) => hits.some((h) => h.action === a);
      if (has('drop')) return;
      let out = bytes;
      if (has('corrupt') && meta.tensor) {
        out = Uint8Array.from(bytes);
        out[out.length - 1] ^= 0xff;
      }
      const deliver = () => {
        rawPublish(subject, out);
        if (has('duplicate')) rawPublish(subject, out);
        const h = held.get(subject); // a message held back for reordering goes after this one
        if (h) {
          held.delete(subject);
          clearTimeout(h.timer);
          rawPublish(subject, h.bytes);
        }
      };
      if (has('reorder') && !held.has(subject)) {
        const timer = setTimeout(() => {
          held.delete(subject);
          rawPublish(subject, out);
        }, 25);
        held.set(subject, { bytes: out, timer });
        return;
      }
      const delay = hits.find((h) => h.action === 'delay');
      if (delay) setTimeout(deliver, delay.delayMs);
      else deliver();
    };

    receive((cmd) => {
      if (cmd.type === 'wire.send') {
        const m = cmd.message;
        if (m.kind === 'tensor.request' && opts.requestQuietMs) {
          const [, , , p, h] = cmd.subject.split('.'); // lockstep.<run>.host.<p>.<h>.data: the peer asked
          if (assembler.receiving(`host/${p}/${h}`, m.step, m.attempt, m.tensor, opts.requestQuietMs)) {
            opts.log.debug(
              { to: `host/${p}/${h}`, tensor: m.tensor, step: m.step, attempt: m.attempt },
              'tensor request held: its chunks are still coming',
            );
            return;
          }
        }
        publish(cmd.subject, encodeControl(m), { kind: m.kind, step: m.step, msgId: m.msgId, tensor: false });
      } else {
        const frames = encodeTensor({ v: 1, kind: 'tensor.chunk', ...cmd.head }, cmd.data, opts.chunkBytes);
        frames.forEach((f, i) =>
          publish(cmd.subject, f, { kind: cmd.head.tensor, step: cmd.head.step, msgId: `${cmd.head.msgId}#${i}`, tensor: true }),
        );
      }
    });

    return () => {
      for (const h of held.values()) clearTimeout(h.timer);
      for (const s of subs) s.unsubscribe();
    };
  });
}

/** The edge of one actor of a run, with the topology's wire limits and seeded faults. */
export function edgeFor(
  t: Topology,
  role: 'client' | 'pod' | 'host',
  opts: Pick<EdgeOptions, 'nc' | 'runId' | 'log' | 'listen' | 'expectedLength'>,
) {
  return natsEdge({
    ...opts,
    chunkBytes: t.wire.chunkBytes,
    maxControlBytes: t.wire.maxControlBytes,
    faults: new FaultPlan(t.faults, role),
    requestQuietMs: t.heartbeat.intervalMs,
  });
}
