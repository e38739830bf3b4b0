import type { Logger } from 'pino';
import { subjects, type Topology } from '@lockstep/topology';
import type { Transport } from './edge.ts';
import { LocalBus } from './local.ts';

/**
 * Batch frames: the in-pod messages one process sends another in one turn of
 * its event loop, in one NATS message (Pathways' dataflow layer batches the
 * same way). A frame is "LSB1", a u32 count (little-endian), then for each
 * message a u16 subject length, the subject (ASCII), a u32 length and the
 * message's bytes, exactly as its edge published them. Decoding never throws.
 */
const MAGIC = [0x4c, 0x53, 0x42, 0x31]; // LSB1
/** Messages a frame holds at most. */
export const BATCH_MAX_MESSAGES = 65_536;
/** Bytes of a frame at most: under NATS's default max_payload (1 MiB), with room for the protocol's own. */
export const BATCH_MAX_BYTES = 1_000_000;
/** A message larger than this is published alone (after what is batched for its process, so the order holds). */
export const BATCH_MAX_MESSAGE_BYTES = 64 * 1024;

export type BatchEntry = { subject: string; bytes: Uint8Array };

export function encodeBatch(entries: readonly BatchEntry[]): Uint8Array {
  const subs = entries.map((e) => Buffer.from(e.subject, 'latin1'));
  const size = 8 + entries.reduce((n, e, i) => n + 6 + subs[i].length + e.bytes.length, 0);
  const out = Buffer.allocUnsafe(size);
  out.set(MAGIC, 0);
  out.writeUInt32LE(entries.length, 4);
  let at = 8;
  entries.forEach((e, i) => {
    out.writeUInt16LE(subs[i].length, at);
    out.set(subs[i], at + 2);
    at += 2 + subs[i].length;
    out.writeUInt32LE(e.bytes.length, at);
    out.set(e.bytes, at + 4);
    at += 4 + e.bytes.length;
  });
  return out;
}

/** The messages of a frame, or why it is not one (bounds: count, lengths within the frame, nothing left over). */
export function decodeBatch(bytes: Uint8Array): { ok: true; entries: BatchEntry[] } | { ok: false; reason: string } {
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) return { ok: false, reason: 'not a batch frame' };
  if (bytes.length > BATCH_MAX_BYTES) return { ok: false, reason: `frame of ${bytes.length} bytes > ${BATCH_MAX_BYTES}` };
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = buf.readUInt32LE(4);
  if (count < 1 || count > BATCH_MAX_MESSAGES) return { ok: false, reason: `count ${count} not in 1..${BATCH_MAX_MESSAGES}` };
  const entries: BatchEntry[] = [];
  let at = 8;
  for (let i = 0; i < count; i++) {
    if (at + 2 > buf.length) return { ok: false, reason: `message ${i}: truncated` };
    const n = buf.readUInt16LE(at);
    if (n < 1 || n > 512 || at + 2 + n + 4 > buf.length) return { ok: false, reason: `message ${i}: subject length ${n} out of bounds` };
    const subject = buf.toString('latin1', at + 2, at + 2 + n);
    at += 2 + n;
    const len = buf.readUInt32LE(at);
    if (at + 4 + len > buf.length) return { ok: false, reason: `message ${i}: length ${len} past the frame` };
    entries.push({ subject, bytes: bytes.subarray(at + 4, at + 4 + len) });
    at += 4 + len;
  }
  if (at !== buf.length) return { ok: false, reason: `${buf.length - at} bytes after the last message` };
  return { ok: true, entries };
}

/**
 * The process of pod `pod` that receives what is published on `subject`, by its key (see `processKey`), when the
 * subject is one whose receiver and sender are both in that pod: a host's data from a host of its own pod
 * (reduce-scatter, all-gather, tensor requests), a host's commands, a pod's reports. Anything else (the cross-pod
 * exchange, pings and healing, the client's subjects) is undefined: it is never batched, so the cross-pod host pairs
 * stay one flow each over the DCN route.
 */
export function inPodReceiver(t: Pick<Topology, 'hostsPerPod' | 'hostsPerProcess'>, pod: number, subject: string): string | undefined {
  // lockstep.<run>.host.<p>.<h>.data.<sp>.<sh> | lockstep.<run>.host.<p>.<h>.cmd | lockstep.<run>.pod.<p>.report.<sh>
  const k = subject.split('.');
  if (
    k[2] === 'host' &&
    Number(k[3]) === pod &&
    (k[5] === 'cmd' ? k.length === 6 : k[5] === 'data' && k.length === 8 && Number(k[6]) === pod)
  ) {
    const h = Number(k[4]);
    if (!Number.isInteger(h) || h < 0 || h >= t.hostsPerPod) return undefined;
    return `h${h - (h % t.hostsPerProcess)}`;
  }
  if (k[2] === 'pod' && Number(k[3]) === pod && k[4] === 'report' && k.length === 6) return 'pod';
  return undefined;
}

/** The process (its key) the subject names as its sender, for the subjects `inPodReceiver` batches. */
function namedSenderProcess(t: Pick<Topology, 'hostsPerProcess'>, pod: number, subject: string): string | undefined {
  const k = subject.split('.');
  const group = (h: number) => (Number.isInteger(h) && h >= 0 ? `h${h - (h % t.hostsPerProcess)}` : undefined);
  if (k[2] === 'host' && k[5] === 'cmd') return 'pod';
  if (k[2] === 'host' && k[5] === 'data' && Number(k[6]) === pod) return group(Number(k[7]));
  if (k[2] === 'pod' && k[4] === 'report') return group(Number(k[5]));
  return undefined;
}

export interface ProcessWireOptions {
  runId: string;
  topology: Pick<Topology, 'hostsPerPod' | 'hostsPerProcess'>;
  pod: number;
  /** This process's key among its pod's processes (`processKey` of the actors it runs). */
  self: string;
  /** The process's NATS connection as a transport. */
  remote: Transport;
  log: Logger;
}

/**
 * The wire of one process: what its actors publish to each other is handed
 * over in memory (LocalBus); what they publish to another process of the
 * same pod is gathered, per receiving process, over one turn of the event
 * loop into batch frames on `lockstep.<run>.batch.<p>.<to>.<from>`; the rest
 * (cross-pod, the client's) is published as it is. The receiving process
 * takes from a frame only messages whose subject it receives and names one of
 * the sending process's actors as its sender (the server let only that
 * process publish under its key), and hands each to its actors' edges, which
 * check it as any other message: schema, sender, run, size, checksum,
 * de-duplication. Faults are injected by the sending edge before any of this.
 * Counts: `framesOut`, `messagesBatched`, `rejected` (frames or messages
 * refused, by reason).
 */
export class ProcessWire {
  readonly bus = new LocalBus();
  private readonly pending = new Map<string, { entries: BatchEntry[]; bytes: number }>();
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;
  framesOut = 0;
  messagesBatched = 0;
  readonly rejected: Record<string, number> = {};

  constructor(private readonly opts: ProcessWireOptions) {}

  /** Start taking batch frames addressed to this process. */
  start(): this {
    const { runId, pod, self } = this.opts;
    this.unsubscribe = this.opts.remote.subscribe(subjects.batch(runId, pod, self, '*'), (bytes, subject) => this.take(bytes, subject));
    return this;
  }

  stop(): void {
    this.flush();
    this.unsubscribe?.();
  }

  /** The transport an edge of this process uses. */
  transport(): Transport {
    return {
      subscribe: (subject, onMessage) => {
        const local = this.bus.subscribe(subject, onMessage);
        const far = this.opts.remote.subscribe(subject, onMessage);
        return () => {
          local();
          far();
        };
      },
      publish: (subject, bytes) => {
        if (this.bus.publish(subject, bytes)) return;
        const to = inPodReceiver(this.opts.topology, this.opts.pod, subject);
        if (to === undefined || to === this.opts.self) {
          this.opts.remote.publish(subject, bytes);
          return;
        }
        if (bytes.length > BATCH_MAX_MESSAGE_BYTES) {
          this.flushTo(to);
          this.opts.remote.publish(subject, bytes);
          return;
        }
        let p = this.pending.get(to);
        if (p && (p.bytes + bytes.length + subject.length + 6 > BATCH_MAX_BYTES - 8 || p.entries.length >= BATCH_MAX_MESSAGES)) {
          this.flushTo(to);
          p = undefined;
        }
        if (!p) {
          p = { entries: [], bytes: 0 };
          this.pending.set(to, p);
        }
        p.entries.push({ subject, bytes });
        p.bytes += bytes.length + subject.length + 6;
        if (!this.scheduled) {
          this.scheduled = true;
          setImmediate(() => this.flush());
        }
      },
    };
  }

  /** Publish every frame gathered so far. */
  flush(): void {
    this.scheduled = false;
    for (const to of [...this.pending.keys()]) this.flushTo(to);
  }

  private flushTo(to: string): void {
    const p = this.pending.get(to);
    if (!p || p.entries.length === 0) return;
    this.pending.delete(to);
    const { runId, pod, self } = this.opts;
    this.framesOut++;
    this.messagesBatched += p.entries.length;
    try {
      this.opts.remote.publish(subjects.batch(runId, pod, to, self), encodeBatch(p.entries));
    } catch (err) {
      this.opts.log.error({ err, to, messages: p.entries.length }, 'batch frame publish failed');
    }
  }

  private refuse(reason: string, detail: string): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    if (this.rejected[reason] === 1 || this.rejected[reason] % 1000 === 0)
      this.opts.log.warn({ reason, detail, count: this.rejected[reason] }, 'batch frame content refused');
  }

  /** A frame from another process of this pod: each message it may send here goes to this process's edges. */
  private take(bytes: Uint8Array, subject: string): void {
    const from = subject.split('.').at(-1) ?? '';
    const d = decodeBatch(bytes);
    if (!d.ok) {
      this.refuse('malformed batch', `${d.reason} (from ${from})`);
      return;
    }
    const { topology: t, pod, self } = this.opts;
    for (const e of d.entries) {
      if (inPodReceiver(t, pod, e.subject) !== self) {
        this.refuse('batch: not for this process', `${e.subject} from ${from}`);
        continue;
      }
      if (namedSenderProcess(t, pod, e.subject) !== from) {
        this.refuse('forged sender', `${e.subject} in a batch frame of process ${from}`);
        continue;
      }
      // delivered in the bus's rounds, with what this process's own actors sent each other, in arrival order
      this.bus.enqueue(e.subject, e.bytes);
    }
  }
}
