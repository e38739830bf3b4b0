import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { fromCallback } from 'xstate';
import type { Logger } from 'pino';
import { decodeControl, decodeTensorChunk, encodeControl, encodeTensor, isTensorFrame, type ControlMessage, type TensorKind } from '@lockstep/topology';
import { TensorAssembler, type AssembledTensor } from './assembler.ts';
import { authorize, type Channel } from './authorize.ts';
import { DedupWindow } from './dedup.ts';

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
  | { type: 'wire.duplicate'; msgId: string };

export interface EdgeOptions {
  nc: NatsConnection;
  runId: string;
  listen: { subject: string; channel: Channel }[];
  chunkBytes: number;
  maxControlBytes: number;
  /** For hosts: the element count of a tensor for a shard, or undefined if this host takes none. */
  expectedLength?: (tensor: TensorKind, shard: number) => number | undefined;
  log: Logger;
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
      const denied = authorize(channel, msg.kind, msg.sender);
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

    receive((cmd) => {
      try {
        if (cmd.type === 'wire.send') {
          opts.nc.publish(cmd.subject, encodeControl(cmd.message));
        } else {
          for (const f of encodeTensor({ v: 1, kind: 'tensor.chunk', ...cmd.head }, cmd.data, opts.chunkBytes)) opts.nc.publish(cmd.subject, f);
        }
      } catch (err) {
        opts.log.error({ err, subject: cmd.subject }, 'publish failed');
      }
    });

    return () => {
      for (const s of subs) s.unsubscribe();
    };
  });
}
