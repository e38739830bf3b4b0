import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { InspectionEvent } from 'xstate';
import { z } from 'zod';
import {
  failureReport,
  FlowTensor,
  hostPhases,
  toMicros,
  type FlowEvent,
  type HostPhase,
  type RunEvent,
  type RunFailure,
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
  /** Hand over what is queued (at most `timeoutMs`), then close the pipe. */
  close(timeoutMs?: number): Promise<void>;
  /** Events dropped because too much was queued. */
  readonly dropped: number;
}

/** The most a process queues for a launcher that does not read (bytes). */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

const EventsFdEnv = z.object({ LOCKSTEP_EVENTS_FD: z.coerce.number().int().min(3).max(1023).optional() });

/** The sink LOCKSTEP_EVENTS_FD names, or undefined (no launcher reads events: a container, a test). Throws on a bad value. */
export function eventSinkFromEnv(env: NodeJS.ProcessEnv = process.env): EventSink | undefined {
  const r = EventsFdEnv.safeParse({ LOCKSTEP_EVENTS_FD: env.LOCKSTEP_EVENTS_FD || undefined });
  if (!r.success) throw new Error('LOCKSTEP_EVENTS_FD: must be a file descriptor number (3-1023)');
  const fd = r.data.LOCKSTEP_EVENTS_FD;
  if (fd === undefined) return undefined;
  return socketSink(new Socket({ fd, readable: false, writable: true }));
}

/** A sink writing JSON lines to `out` without blocking. */
export function socketSink(out: Writable): EventSink {
  let broken = false;
  let dropped = 0;
  out.on('error', () => {
    broken = true; // the launcher is gone: the process exits on its own when its stdin closes
  });
  return {
    emit: (e) => {
      if (broken) return;
      if (out.writableLength > MAX_QUEUED_BYTES) {
        dropped++;
        return;
      }
      out.write(`${JSON.stringify(e)}\n`);
    },
    close: (timeoutMs = 2000) =>
      new Promise<void>((resolve) => {
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
 * current phase. Returns the start of the earliest of them (when the host left whatever it did before), if any.
 */
export function hostStepSlices(sink: EventSink, actor: string) {
  let key = '';
  let done = new Set<string>();
  return (c: {
    phase: string;
    step: number;
    attempt: number;
    phaseStartedAt: number;
    phaseMs: Partial<Record<HostPhase, number>>;
  }): number | undefined => {
    const k = `${c.step}/${c.attempt}`;
    if (k !== key) {
      key = k;
      // a commit moves the host to the next step before its next attempt begins: the times it holds are the last attempt's
      done = new Set((hostPhases as readonly string[]).includes(c.phase) ? [] : hostPhases.filter((p) => c.phaseMs[p] !== undefined));
    }
    if (c.attempt < 0) return undefined;
    const closed = hostPhases.filter((p) => c.phaseMs[p] !== undefined && !done.has(p));
    if (closed.length === 0) return undefined;
    let end = c.phaseStartedAt;
    const out: RunEvent[] = [];
    for (const p of closed.reverse()) {
      const start = end - (c.phaseMs[p] ?? 0);
      out.push({
        kind: 'slice',
        actor,
        name: p,
        at: toMicros(start),
        dur: Math.max(0, toMicros(end) - toMicros(start)),
        step: c.step,
        attempt: c.attempt,
      });
      done.add(p);
      end = start;
    }
    for (const e of out.reverse()) sink.emit(e);
    return end;
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

/** Whom a host-to-host data subject goes to: `lockstep.<run>.host.<p>.<h>.data.<fromPod>.<fromHost>`. */
function dataTarget(subject: string): string | undefined {
  const m = /\.host\.(\d+)\.(\d+)\.data\.\d+\.\d+$/.exec(subject);
  return m ? `host/${m[1]}/${m[2]}` : undefined;
}

const isFlowTensor = (t: unknown): t is FlowEvent['tensor'] => FlowTensor.safeParse(t).success;

/**
 * An `inspect` observer for a host: a `flow` event for every step tensor it sends another host (reduce-scatter
 * slices, the cross-pod exchange, all-gather shards) and for every one it takes, so a timeline can draw the arrows.
 */
export function hostFlows(sink: EventSink, me: string, clock: RunClock): (e: InspectionEvent) => void {
  return (e) => {
    if (e.type !== '@xstate.event') return;
    const target = e.actorRef as unknown as { _parent?: { _parent?: unknown }; id: string };
    const ev = e.event as {
      type: string;
      at?: number;
      subject?: string;
      head?: { tensor: string; step: number; attempt: number };
      data?: Float32Array;
      tensor?: { tensor: string; sender: string; step: number; attempt: number; data: Float32Array };
    };
    if (target._parent === undefined && ev.type === 'tensor.received' && ev.tensor && isFlowTensor(ev.tensor.tensor)) {
      const t = ev.tensor;
      sink.emit({
        kind: 'flow',
        end: 'receive',
        actor: me,
        at: toMicros(ev.at ?? clock.now()),
        tensor: t.tensor as FlowEvent['tensor'],
        from: t.sender,
        to: me,
        step: t.step,
        attempt: t.attempt,
        bytes: t.data.byteLength,
      });
      return;
    }
    if (target.id !== 'wire' || target._parent?._parent !== undefined) return;
    if (ev.type !== 'wire.sendTensor' || !ev.head || !isFlowTensor(ev.head.tensor)) return;
    const to = dataTarget(ev.subject ?? '');
    if (!to) return;
    sink.emit({
      kind: 'flow',
      end: 'send',
      actor: me,
      at: toMicros(clock.now()),
      tensor: ev.head.tensor,
      from: me,
      to,
      step: ev.head.step,
      attempt: ev.head.attempt,
      bytes: ev.data?.byteLength ?? 0,
    });
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
