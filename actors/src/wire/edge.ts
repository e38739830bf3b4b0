import type { NatsConnection } from '@nats-io/transport-node';
import { fromCallback } from 'xstate';
import type { Logger } from 'pino';
import {
  decodeControl,
  decodeTensorChunk,
  encodeControl,
  isTensorFrame,
  type ControlMessage,
  parameterCount,
  subjectSender,
  tensorFrames,
  StepTensorKind,
  type TensorKind,
  type Topology,
} from '@lockstep/topology';
import type { RunClock } from '../clock.ts';
import { TensorAssembler, type AssembledTensor, type TensorConflict } from './assembler.ts';
import { authorize, type Channel } from './authorize.ts';
import { DedupWindow } from './dedup.ts';
import { FaultPlan, forgedCopy } from './faults.ts';
import { RejectionLog } from './ratelog.ts';

/** What a machine asks its edge to publish. */
export type WireCommand =
  | { type: 'wire.send'; subject: string; message: ControlMessage }
  | {
      type: 'wire.sendTensor';
      subject: string;
      head: { runId: string; step: number; attempt: number; sender: string; msgId: string; tensor: TensorKind; shard: number };
      data: Float32Array;
    }
  /** Several commands at once, published in their order (a host's tensors for every peer of a phase: one command, not one each). */
  | { type: 'wire.sendMany'; commands: WireCommand[] };

/** One message to publish (a WireCommand other than `wire.sendMany`). */
export type OneWireCommand = Exclude<WireCommand, { type: 'wire.sendMany' }>;

/**
 * What an edge tells its machine, each stamped with `at`: when it reached the
 * edge, in ms on the run's clock (the only way time reaches a machine besides
 * its delays). Control messages arrive as `{ type: kind, msg }`.
 */
export type WireEvent = WireEventBody & { at: number };
type WireEventBody =
  | { [K in ControlMessage['kind']]: { type: K; msg: Extract<ControlMessage, { kind: K }> } }[ControlMessage['kind']]
  /** A healing host's state tensor (state.params, state.opt), once all its chunks are in. */
  | { type: 'tensor.received'; tensor: AssembledTensor }
  /**
   * Step tensors (grad.slice, grad.exchange, param.shard, and the chain's) completed one after the other, in the order they completed,
   * with nothing else for the machine between them: one event for a burst of deliveries (see EdgeOptions.batchTensors).
   * A machine takes them as it would take each in turn.
   */
  | { type: 'tensors.received'; tensors: AssembledTensor[] }
  /** Two copies of one tensor differ (see TensorAssembler): an alarm, never a silent first-wins. */
  | { type: 'tensor.conflict'; conflict: TensorConflict }
  | { type: 'wire.rejected'; reason: string; detail?: string }
  | { type: 'wire.duplicate'; msgId: string }
  | { type: 'wire.faultInjected'; count: number };

/**
 * How an edge reaches the others: NATS in a real run (`natsTransport`), the
 * simulated network in `lockstep sim`. Bytes in, bytes out; everything else
 * (parsing, authorization, de-duplication, reassembly, faults) is the edge's.
 */
export interface Transport {
  /** Deliver every message published on a subject matching `subject` (a NATS pattern), with the subject it was published on; returns the unsubscribe. */
  subscribe(subject: string, onMessage: (bytes: Uint8Array, subject: string) => void): () => void;
  publish(subject: string, bytes: Uint8Array): void;
}

export interface EdgeOptions {
  transport: Transport;
  clock: RunClock;
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
  /** Bytes of lately completed tensors kept to compare late copies with (see CompletedTensors; 64 MiB when absent). */
  retainBytes?: number;
  /**
   * How the edge hands over step tensors: `schedule(flush)` is called with the first tensor of a burst, and the
   * tensors completed until `flush` runs (with no other event between them: any other event flushes them first, so the
   * machine sees everything in arrival order) go to the machine as one `tensors.received`. A real run passes
   * `queueMicrotask`: a burst is what one socket read or one in-process delivery round completes. Absent (the
   * simulator): each tensor is its own `tensors.received`, at once.
   */
  batchTensors?: (flush: () => void) => void;
  /**
   * Spread a large send (a phase's tensors for every peer: hundreds in a large pod) over turns of the event loop:
   * SEND_SLICE messages now, then `schedule(next)` for the next slice, and so on; tensors sent meanwhile wait their
   * turn (their order is kept), control messages do not (a heartbeat must not wait behind a phase's tensors). A
   * process of many hosts then reads its socket between slices instead of framing every host's tensors in one go. A
   * real run passes `setImmediate`; absent (the simulator), everything is sent at once.
   */
  spreadSends?: (next: () => void) => void;
}

/** Messages an edge publishes in one turn when it spreads a send (see EdgeOptions.spreadSends). */
export const SEND_SLICE = 64;

function flatten(cmd: WireCommand): OneWireCommand[] {
  return cmd.type === 'wire.sendMany' ? cmd.commands.flatMap(flatten) : [cmd];
}

/** The tensors of a step (not a healing host's state): handed to the machine in bursts (`tensors.received`). */
const STEP_TENSORS: ReadonlySet<string> = new Set(StepTensorKind.options);

/** The edge's part of a control message that goes out: encoded, with what the fault layer needs to know. */
type Outgoing = {
  subject: string;
  bytes: Uint8Array;
  meta: { kind: string; step: number; attempt: number; msgId: string; tensor: boolean };
};

/**
 * The edge of an actor: subscribes to its subjects, parses every message with
 * its schema, checks who sent it (the `sender` it names must be the one its
 * subject names, where the subject names one: the server lets only that actor
 * publish there; and that sender may send that kind on that channel), drops repeats, reassembles tensors and hands
 * the machine typed events stamped with the time (or `wire.rejected` with the
 * reason). A control message is a repeat by its id; a tensor chunk by its
 * tensor and index, and only with the same bytes: two copies of a tensor that
 * differ are logged as an error and handed over as `tensor.conflict`. It
 * publishes what the machine sends, through the seeded fault layer. The
 * machine never sees raw bytes.
 */
export function edge(opts: EdgeOptions) {
  return fromCallback<WireCommand>(({ sendBack, receive }) => {
    const { clock } = opts;
    let burst: AssembledTensor[] = [];
    let scheduled = false;
    const flushTensors = () => {
      scheduled = false;
      if (burst.length === 0) return;
      const tensors = burst;
      burst = [];
      sendBack({ type: 'tensors.received', tensors, at: clock.now() } as WireEvent);
    };
    // anything else for the machine goes after the tensors that came before it
    const tell = (e: WireEventBody) => {
      flushTensors();
      sendBack({ ...e, at: clock.now() } as WireEvent);
    };
    const tellTensor = (tensor: AssembledTensor) => {
      if (!STEP_TENSORS.has(tensor.tensor)) return tell({ type: 'tensor.received', tensor });
      burst.push(tensor);
      if (!opts.batchTensors) return flushTensors();
      if (!scheduled) {
        scheduled = true;
        opts.batchTensors(flushTensors);
      }
    };
    const dedup = new DedupWindow();
    const assembler = new TensorAssembler(opts.expectedLength ?? (() => undefined), undefined, { bytes: opts.retainBytes });
    // a flood of junk must not become a flood of log lines: rejections are logged with counts, at a bounded rate
    const rejections = new RejectionLog(opts.log, clock);
    const conflictsAgain = new RejectionLog(opts.log, clock, 'chunk of a tensor in conflict');
    const reject = (reason: string, detail?: string) => {
      rejections.add(reason, detail);
      tell({ type: 'wire.rejected', reason, detail });
    };

    const onMessage = (channel: Channel, named: NamedSender, bytes: Uint8Array, subject: string) => {
      if (isTensorFrame(bytes)) {
        const d = decodeTensorChunk(bytes);
        if (!d.ok) return reject(d.reason, d.detail);
        const h = d.value.header;
        if (h.runId !== opts.runId) return reject('wrong run', h.runId);
        const forged = forgedOn(named, subject, h.sender, h.tensor);
        if (forged) return reject('forged sender', forged);
        const denied = authorize(channel, 'tensor.chunk', h.sender, h);
        if (denied) return reject(denied.reason, denied.detail);
        // a repeated chunk is the assembler's to judge, by its tensor and index and its bytes, not by its message id:
        // two copies under one id may differ, and the first must not win silently
        const r = assembler.add(d.value, clock.now());
        if (r.kind === 'rejected') return reject(r.reason, r.detail);
        if (r.kind === 'duplicate') return tell({ type: 'wire.duplicate', msgId: h.msgId });
        if (r.kind === 'conflict') {
          // an error when found; later chunks of the same tensor (counted too) a warning with their count, at a bounded rate
          if (r.conflict.found === 'again') conflictsAgain.add(`${r.conflict.sender} ${r.conflict.tensor} ${r.conflict.shard}`, h.msgId);
          else opts.log.error({ ...r.conflict, msgId: h.msgId }, 'tensor copies differ');
          return tell({ type: 'tensor.conflict', conflict: r.conflict });
        }
        if (r.kind === 'complete') tellTensor(r.tensor);
        return;
      }
      const d = decodeControl(bytes, opts.maxControlBytes);
      if (!d.ok) return reject(d.reason, d.detail);
      const msg = d.value;
      if (msg.runId !== opts.runId) return reject('wrong run', msg.runId);
      const forged = forgedOn(named, subject, msg.sender, msg.kind);
      if (forged) return reject('forged sender', forged);
      const denied = authorize(channel, msg.kind, msg.sender, msg.kind === 'tensor.request' ? { tensor: msg.tensor } : undefined);
      if (denied) return reject(denied.reason, denied.detail);
      if (!dedup.firstTime(msg.msgId)) return tell({ type: 'wire.duplicate', msgId: msg.msgId });
      tell({ type: msg.kind, msg } as WireEventBody);
    };

    const unsubscribe = opts.listen.map(({ subject, channel }) => {
      const named = subjectSender(channel.on);
      return opts.transport.subscribe(subject, (bytes, on) => onMessage(channel, named, bytes, on));
    });

    const held = new Map<string, { copies: Uint8Array[]; timer: unknown }>();
    const rawPublish = (subject: string, bytes: Uint8Array) => {
      try {
        opts.transport.publish(subject, bytes);
      } catch (err) {
        opts.log.error({ err, subject }, 'publish failed');
      }
    };
    /** Publish, through the seeded fault layer when one is configured. */
    const publish = ({ subject, bytes, meta }: Outgoing) => {
      const hits = opts.faults?.active ? opts.faults.decide({ ...meta, subject }) : [];
      if (hits.length === 0) return rawPublish(subject, bytes);
      tell({ type: 'wire.faultInjected', count: hits.length });
      opts.log.debug({ subject, kind: meta.kind, msgId: meta.msgId, faults: hits.map((h) => h.action) }, 'fault injected');
      const has = (a: string) => hits.some((h) => h.action === a);
      if (has('drop')) return;
      let out = bytes;
      if (has('corrupt') && meta.tensor) {
        out = Uint8Array.from(bytes);
        out[out.length - 1] ^= 0xff;
      }
      // forge: a second copy of the chunk with one value changed, right behind it
      const forged = has('forge') && meta.tensor ? forgedCopy(bytes) : undefined;
      const copies = forged ? [out, forged] : [out];
      const deliver = () => {
        for (const c of copies) rawPublish(subject, c);
        if (has('duplicate')) rawPublish(subject, out);
        const h = held.get(subject); // a message held back for reordering goes after this one
        if (h) {
          held.delete(subject);
          clock.clearTimeout(h.timer);
          for (const c of h.copies) rawPublish(subject, c);
        }
      };
      if (has('reorder') && !held.has(subject)) {
        const timer = clock.setTimeout(() => {
          held.delete(subject);
          for (const c of copies) rawPublish(subject, c);
        }, 25);
        held.set(subject, { copies, timer });
        return;
      }
      const delay = hits.find((h) => h.action === 'delay');
      if (delay) clock.setTimeout(deliver, delay.delayMs);
      else deliver();
    };

    // what waits to be published when sends are spread over turns (see EdgeOptions.spreadSends), in order
    let outbox: OneWireCommand[] = [];
    let draining = false;
    let stopped = false;
    const drain = () => {
      if (stopped) return;
      const now = outbox.splice(0, SEND_SLICE);
      for (const c of now) sendOne(c);
      if (outbox.length > 0) opts.spreadSends!(drain);
      else draining = false;
    };
    const send = (cmd: WireCommand): void => {
      const cmds = cmd.type === 'wire.sendMany' ? cmd.commands.flatMap(flatten) : [cmd];
      // a control message (a heartbeat, a report, a tensor request) does not wait behind tensors: its receiver is
      // another actor than theirs, or the same peer, which takes a request and tensors in either order
      if (!opts.spreadSends || (!draining && cmds.length <= SEND_SLICE) || cmds.every((c) => c.type === 'wire.send')) {
        for (const c of cmds) sendOne(c);
        return;
      }
      outbox = outbox.length === 0 ? cmds : [...outbox, ...cmds];
      if (!draining) {
        draining = true;
        drain();
      }
    };
    const sendOne = (cmd: OneWireCommand): void => {
      if (cmd.type === 'wire.send') {
        const m = cmd.message;
        if (m.kind === 'tensor.request' && opts.requestQuietMs) {
          const peer = hostOfDataSubject(cmd.subject);
          if (peer && assembler.receiving(peer, m.step, m.attempt, m.tensor, clock.now(), opts.requestQuietMs)) {
            opts.log.debug(
              { to: peer, tensor: m.tensor, step: m.step, attempt: m.attempt },
              'tensor request held: its chunks are still coming',
            );
            return;
          }
        }
        publish({
          subject: cmd.subject,
          bytes: encodeControl(m),
          meta: { kind: m.kind, step: m.step, attempt: m.attempt, msgId: m.msgId, tensor: false },
        });
      } else {
        // each chunk is published as soon as it is framed (see tensorFrames)
        let i = 0;
        for (const bytes of tensorFrames({ v: 1, kind: 'tensor.chunk', ...cmd.head }, cmd.data, opts.chunkBytes)) {
          publish({
            subject: cmd.subject,
            bytes,
            meta: {
              kind: cmd.head.tensor,
              step: cmd.head.step,
              attempt: cmd.head.attempt,
              msgId: `${cmd.head.msgId}#${i++}`,
              tensor: true,
            },
          });
        }
      }
    };
    receive(send);

    return () => {
      stopped = true;
      outbox = [];
      burst = [];
      for (const h of held.values()) clock.clearTimeout(h.timer);
      for (const u of unsubscribe) u();
      rejections.flush();
      conflictsAgain.flush();
    };
  });
}

/** Who the subject of a channel says sent a message (see `subjectSender`). */
type NamedSender = (subject: string) => string | undefined;

/** Why a message's `sender` is not the one its subject names (undefined: it is). */
function forgedOn(named: NamedSender, subject: string, sender: string, what: string): string | undefined {
  const from = named(subject);
  return from === sender ? undefined : `${what} from ${sender} on a subject of ${from ?? 'no actor'} (${subject})`;
}

/** `lockstep.<run>.host.<p>.<h>.data.<sp>.<sh>` -> `host/<p>/<h>` (the peer a tensor request goes to). */
function hostOfDataSubject(subject: string): string | undefined {
  const m = /\.host\.(\d+)\.(\d+)\.data\.\d+\.\d+$/.exec(subject);
  return m ? `host/${m[1]}/${m[2]}` : undefined;
}

/** NATS as an edge's transport: core NATS subscriptions and publishes on one connection. */
export function natsTransport(nc: NatsConnection, log: Logger): Transport {
  return {
    subscribe: (subject, onMessage) => {
      const sub = nc.subscribe(subject, {
        callback: (err, m) => {
          if (err) return log.error({ err, subject }, 'subscription error');
          onMessage(m.data, m.subject);
        },
      });
      return () => sub.unsubscribe();
    },
    publish: (subject, bytes) => nc.publish(subject, bytes),
  };
}

/** The edge of one actor of a run, with the topology's wire limits and seeded faults. */
export function edgeFor(
  t: Topology,
  role: 'client' | 'pod' | 'host',
  opts: Pick<EdgeOptions, 'transport' | 'clock' | 'runId' | 'log' | 'listen' | 'expectedLength' | 'batchTensors' | 'spreadSends'>,
) {
  return edge({
    ...opts,
    chunkBytes: t.wire.chunkBytes,
    maxControlBytes: t.wire.maxControlBytes,
    faults: new FaultPlan(t.faults, role),
    requestQuietMs: t.heartbeat.intervalMs,
    // four parameter vectors (about two steps of what a host receives), at least 4 MiB
    retainBytes: Math.max(4 * 1024 * 1024, 16 * parameterCount(t.model)),
  });
}
