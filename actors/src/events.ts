import { createWriteStream } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { InspectionEvent } from 'xstate';
import { z } from 'zod';
import {
  failureReport,
  hostPhases,
  toMicros,
  type FlowEvent,
  type HostPhase,
  type RunEvent,
  type RunFailure,
  type SliceEvent,
} from '@lockstep/topology';
import type { RunClock } from './clock.ts';
import { totalRejections, type Rejections } from './rejects.ts';

/**
 * A role process's side of the run record (see topology's runevents.ts): the
 * adapters watch their machines (snapshots, and what they send and take) and
 * emit typed events, one JSON line each, on the file descriptor the launcher
 * gives them in LOCKSTEP_EVENTS_FD (a pipe it reads). Writes never block the
 * process: a launcher that falls behind lets lines queue in the process (up to
 * MAX_QUEUED_BYTES, then they are dropped and counted), so the record can
 * never slow the protocol. Lines still queued when a process is killed are
 * lost; `close()` hands over the rest before a clean exit.
 */
export interface EventSink {
  emit(e: RunEvent): void;
  /** Any other JSON line (a client's stdout lines, copied to its stream file in a container). */
  line(o: object): void;
  /** Hand over what is queued (at most `timeoutMs`), then close the pipe. */
  close(timeoutMs?: number): Promise<void>;
  /** Events dropped because too much was queued. */
  readonly dropped: number;
}

/** The most a process queues for a launcher that does not read (bytes). */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

const EventsFdEnv = z.object({ LOCKSTEP_EVENTS_FD: z.coerce.number().int().min(3).max(1023).optional() });
const StreamFileEnv = z.object({
  LOCKSTEP_STREAM_FILE: z
    .string()
    .max(4096)
    .regex(/^\/.*\.jsonl$/, 'must be an absolute path ending in .jsonl')
    .optional(),
});

/**
 * The sink LOCKSTEP_EVENTS_FD names (a pipe the launcher reads), else the file LOCKSTEP_STREAM_FILE names (appended
 * to: in a container, where a recorder in another container reads it, `lockstep watch --streams`), or undefined
 * (nobody reads events: a test). Throws on a bad value.
 */
export function eventSinkFromEnv(env: NodeJS.ProcessEnv = process.env): EventSink | undefined {
  const r = EventsFdEnv.safeParse({ LOCKSTEP_EVENTS_FD: env.LOCKSTEP_EVENTS_FD || undefined });
  if (!r.success) throw new Error('LOCKSTEP_EVENTS_FD: must be a file descriptor number (3-1023)');
  const fd = r.data.LOCKSTEP_EVENTS_FD;
  if (fd !== undefined) return socketSink(new Socket({ fd, readable: false, writable: true }));
  const f = StreamFileEnv.safeParse({ LOCKSTEP_STREAM_FILE: env.LOCKSTEP_STREAM_FILE || undefined });
  if (!f.success) throw new Error('LOCKSTEP_STREAM_FILE: must be an absolute path ending in .jsonl');
  const file = f.data.LOCKSTEP_STREAM_FILE;
  return file === undefined ? undefined : socketSink(createWriteStream(file, { flags: 'a' }));
}

/** A sink writing JSON lines to `out` without blocking. */
export function socketSink(out: Writable): EventSink {
  let broken = false;
  let dropped = 0;
  out.on('error', () => {
    broken = true; // the launcher is gone: the process exits on its own when its stdin closes
  });
  // the lines of one turn of the event loop go in one write
  let batch = '';
  const flush = () => {
    if (batch.length > 0 && !broken) out.write(batch);
    batch = '';
  };
  const emit = (e: object) => {
    if (broken) return;
    if (out.writableLength + batch.length > MAX_QUEUED_BYTES) {
      dropped++;
      return;
    }
    if (batch.length === 0) setImmediate(flush);
    batch += `${JSON.stringify(e)}\n`;
  };
  return {
    emit,
    line: emit,
    close: (timeoutMs = 2000) =>
      new Promise<void>((resolve) => {
        flush();
        if (broken) return resolve();
        const timer = setTimeout(resolve, timeoutMs);
        out.end(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
    get dropped() {
      return dropped;
    },
  };
}

/** A snapshot's view of where an actor is: its phase, step attempt, and since when (ms on the run's clock). */
interface Where {
  phase: string;
  step: number;
  attempt: number;
  since: number;
}

/**
 * Emits a `slice` each time an actor leaves a phase (or its step attempt changes), for every phase but `skip`.
 * `since`: when the current phase began (a host's `phaseStartedAt`; absent: the adapter's clock now); `leftAt`: when
 * the previous one ended, if not then (a host passed through step phases in between).
 */
export function phaseSlices(
  sink: EventSink,
  actor: string,
  clock: RunClock,
  skip: readonly string[] = ['idle', 'stopped'],
): (now: { phase: string; step: number; attempt: number; since?: number; leftAt?: number }) => void {
  let prev: Where | undefined;
  return (cur) => {
    if (prev && prev.phase === cur.phase && prev.step === cur.step && prev.attempt === cur.attempt) return;
    const since = cur.since ?? clock.now();
    if (prev && !skip.includes(prev.phase)) {
      const start = toMicros(prev.since);
      const end = Math.max(start, toMicros(cur.leftAt ?? since));
      sink.emit({ kind: 'slice', actor, name: prev.phase, at: start, dur: end - start, step: prev.step, attempt: prev.attempt });
    }
    prev = { phase: cur.phase, step: cur.step, attempt: cur.attempt, since };
  };
}

/**
 * A host's step phases as slices, from the phase times its machine keeps (`phaseMs`: each phase's duration, closed
 * when the next begins, and `phaseStartedAt`: when the current one began). A snapshot can pass over phases that
 * took no time, so each snapshot emits every phase newly closed in this attempt, placed back to back before the
 * current phase. Returns when the host left whatever it did before (the earliest new slice's start), if any, and
 * each new slice's start (ms).
 */
const NONE = { leftAt: undefined, starts: new Map<string, number>() } as const;

export function hostStepSlices(sink: EventSink, actor: string) {
  let key = '';
  let done = new Set<string>();
  // the last prepared step looked at: with steps in flight a host goes from all-gather through prepared to its next
  // step in one macrostep, so no snapshot shows the all-gather closed in its own attempt; the prepared step keeps its
  // phase times and when it was prepared (the all-gather's end), and the phases not emitted yet are taken from there
  let prepared = '';
  return (c: {
    phase: string;
    step: number;
    attempt: number;
    phaseStartedAt: number;
    phaseMs: Partial<Record<HostPhase, number>>;
    pending?: readonly { step: number; attempt: number; phaseMs: Partial<Record<HostPhase, number>>; at: number }[];
  }): { leftAt: number | undefined; starts: ReadonlyMap<string, number> } => {
    const out: SliceEvent[] = [];
    /** Slices of the phases in `phaseMs` not in `emitted`, placed back to back before `endAt`; adds them to `emitted`. */
    const close = (step: number, attempt: number, phaseMs: Partial<Record<HostPhase, number>>, endAt: number, emitted: Set<string>) => {
      const closed = hostPhases.filter((p) => phaseMs[p] !== undefined && !emitted.has(p));
      let end = endAt;
      const these: SliceEvent[] = [];
      for (const p of closed.reverse()) {
        const start = end - (phaseMs[p] ?? 0);
        these.push({
          kind: 'slice',
          actor,
          name: p,
          at: toMicros(start),
          dur: Math.max(0, toMicros(end) - toMicros(start)),
          step,
          attempt,
        });
        emitted.add(p);
        end = start;
      }
      out.push(...these.reverse());
    };
    const last = c.pending?.at(-1);
    if (last && `${last.step}/${last.attempt}` !== prepared) {
      prepared = `${last.step}/${last.attempt}`;
      // only the attempt this host was computing at the last snapshot: anything older was emitted then
      if (prepared === key) close(last.step, last.attempt, last.phaseMs, last.at, done);
    }
    const k = `${c.step}/${c.attempt}`;
    if (k !== key) {
      key = k;
      // a commit moves the host to the next step before its next attempt begins: the times it holds are the last attempt's
      done = new Set((hostPhases as readonly string[]).includes(c.phase) ? [] : hostPhases.filter((p) => c.phaseMs[p] !== undefined));
    }
    if (c.attempt >= 0) close(c.step, c.attempt, c.phaseMs, c.phaseStartedAt, done);
    if (out.length === 0) return NONE;
    const starts = new Map<string, number>();
    for (const e of out) {
      sink.emit(e);
      if (e.step === c.step && e.attempt === c.attempt) starts.set(e.name, e.at / 1000);
    }
    return { leftAt: Math.min(...out.map((e) => e.at / 1000)), starts };
  };
}

/** Emits `rejected` with the new rejections by reason, at most once every `everyMs` (and whatever is left on `flush`). */
export function rejectionBursts(sink: EventSink, actor: string, clock: RunClock, everyMs = 1000) {
  let reported: Rejections = {};
  let last: Rejections = {};
  let lastAt = Number.NEGATIVE_INFINITY;
  const report = () => {
    const counts: Rejections = {};
    for (const [k, v] of Object.entries(last)) if (v > (reported[k] ?? 0)) counts[k] = v - (reported[k] ?? 0);
    if (Object.keys(counts).length === 0) return;
    reported = { ...last };
    lastAt = clock.now();
    sink.emit({ kind: 'rejected', actor, at: toMicros(lastAt), counts });
  };
  return {
    note: (r: Rejections) => {
      if (totalRejections(r) === totalRejections(last)) return;
      last = r;
      if (clock.now() - lastAt >= everyMs) report();
    },
    flush: report,
  };
}

/** What of a host's snapshot its flows are read from. */
export interface HostFlowView {
  phase: string;
  step: number;
  attempt: number;
  pod: number;
  host: number;
  now: number;
  phaseStartedAt: number;
  topology: { pods: number; hostsPerPod: number; collectives: { inPod: 'direct' | 'chain' } };
  ranges: readonly { start: number; end: number }[];
  slices: ReadonlyMap<number, Float32Array>;
  exchanged: ReadonlyMap<number, Float32Array>;
  gathered: ReadonlyMap<number, Float32Array>;
}

/** The tensor a host sends on entering each of these phases (sendTensors on the phase's entry). */
const SENT_IN: readonly [HostPhase, FlowEvent['tensor']][] = [
  ['reduceScatter', 'grad.slice'],
  ['exchange', 'grad.exchange'],
  ['allGather', 'param.shard'],
];
const HELD_IN = { 'grad.slice': 'slices', 'grad.exchange': 'exchanged', 'param.shard': 'gathered' } as const;

/**
 * Pods of more hosts than this draw no in-pod flows (reduce-scatter, all-gather): those are hosts squared arrows a
 * step (1.2 million at 2 x 768), more than a trace viewer shows or a run should write. The cross-pod exchange, one
 * flow a host pair, is drawn at any size.
 */
export const IN_POD_FLOWS_MAX_HOSTS = 16;

/**
 * A host's tensor flows, read from its snapshots (no inspection of every event): a `send` to each peer when it
 * enters the phase that sends (at the phase's start: `starts`, from hostStepSlices, or the current phase's), a
 * `receive` when a peer's tensor is first held (at the time of the event that brought it). Resends asked for
 * again are not drawn; nor are in-pod flows in pods of more than IN_POD_FLOWS_MAX_HOSTS hosts, or of `chain` collectives.
 */
export function hostFlows(sink: EventSink, me: string) {
  let key = '';
  let sent = new Set<string>();
  let held = new Set<string>();
  return (c: HostFlowView, starts: ReadonlyMap<string, number>): void => {
    const k = `${c.step}/${c.attempt}`;
    if (k !== key) {
      key = k;
      sent = new Set();
      held = new Set();
    }
    if (c.attempt < 0) return;
    const { pods, hostsPerPod } = c.topology;
    // the chain's in-pod tensors (running sums, prefixes) are not drawn: only the direct collectives' and the exchange
    const inPod = hostsPerPod <= IN_POD_FLOWS_MAX_HOSTS && c.topology.collectives.inPod === 'direct';
    const bytesOf = (h: number) => 4 * ((c.ranges[h]?.end ?? 0) - (c.ranges[h]?.start ?? 0));
    const base = { kind: 'flow' as const, actor: me, step: c.step, attempt: c.attempt };
    for (const [phase, tensor] of SENT_IN) {
      if (sent.has(tensor)) continue;
      const start = c.phase === phase ? c.phaseStartedAt : starts.get(phase);
      if (start === undefined) continue;
      sent.add(tensor);
      if (tensor !== 'grad.exchange' && !inPod) continue;
      const at = toMicros(start);
      if (tensor === 'grad.exchange') {
        for (let q = 0; q < pods; q++)
          if (q !== c.pod) sink.emit({ ...base, end: 'send', at, tensor, from: me, to: `host/${q}/${c.host}`, bytes: bytesOf(c.host) });
      } else {
        for (let h = 0; h < hostsPerPod; h++)
          if (h !== c.host)
            sink.emit({
              ...base,
              end: 'send',
              at,
              tensor,
              from: me,
              to: `host/${c.pod}/${h}`,
              bytes: tensor === 'grad.slice' ? bytesOf(h) : bytesOf(c.host),
            });
      }
    }
    for (const [tensor, field] of Object.entries(HELD_IN) as [FlowEvent['tensor'], (typeof HELD_IN)[FlowEvent['tensor']]][]) {
      if (tensor !== 'grad.exchange' && !inPod) continue;
      for (const [peer, data] of c[field]) {
        const id = `${tensor}/${peer}`;
        if (held.has(id)) continue;
        held.add(id);
        const from = tensor === 'grad.exchange' ? `host/${peer}/${c.host}` : `host/${c.pod}/${peer}`;
        sink.emit({ ...base, end: 'receive', at: toMicros(c.now), tensor, from, to: me, bytes: data.byteLength });
      }
    }
  };
}

/** An `inspect` observer for the client: a `checkpoint` event each time it has a checkpoint's manifest written. */
export function clientCheckpoints(sink: EventSink, clock: RunClock): (e: InspectionEvent) => void {
  return (e) => {
    if (e.type !== '@xstate.event') return;
    const target = e.actorRef as unknown as { id: string };
    const ev = e.event as { type: string; manifest?: { step: number } };
    if (target.id === 'checkpoints' && ev.type === 'ckpt.writeManifest' && ev.manifest)
      sink.emit({ kind: 'checkpoint', actor: 'client', at: toMicros(clock.now()), step: ev.manifest.step });
  };
}

/** New entries of a growing list in a snapshot (retried attempts, restores): calls `each` once per entry. */
export function newEntries<T>(each: (x: T) => void): (list: readonly T[]) => void {
  let seen = 0;
  return (list) => {
    for (const x of list.slice(seen)) each(x);
    seen = Math.max(seen, list.length);
  };
}

/** A `retry` event for a failed attempt the client runs again. */
export function retryEvent(f: RunFailure, at: number): RunEvent {
  return { kind: 'retry', actor: 'client', at: toMicros(at), failure: failureReport(f) };
}
