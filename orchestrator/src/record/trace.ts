import { closeSync, openSync, writeSync } from 'node:fs';
import { describeFailure, type RunEvent } from '@lockstep/topology';

/**
 * A run's timeline in the Chrome trace-event format (the JSON array form),
 * which Perfetto (ui.perfetto.dev) and chrome://tracing open: a process track
 * per OS process of the run, a thread track per actor in it; each phase an
 * actor was in as a complete slice (`ph: "X"`) with step and attempt in its
 * args; every tensor between two hosts as a flow arrow (`ph: "s"` at the
 * sender, `ph: "f"` at the receiver); retries, restarts, exits, heals, faults,
 * checkpoints and rejections as instant events; the loss as a counter.
 * Timestamps are epoch microseconds, as the events carry them.
 *
 * The file is written as events come (batched: at most FLUSH_MS later), one
 * event a line, each line ending in a comma; `close()` ends the array. A process killed before that leaves an
 * unterminated array, which the format allows (trace viewers append the `]`;
 * `parseTrace` does the same).
 * Format: "Trace Event Format", Google, docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU.
 */
export interface TraceEvent {
  name: string;
  ph: 'X' | 'i' | 's' | 'f' | 'C' | 'M';
  ts: number;
  pid: number;
  tid: number;
  cat?: string;
  dur?: number;
  id?: number;
  bp?: 'e';
  s?: 't' | 'p' | 'g';
  args?: Record<string, unknown>;
}

/** 32-bit FNV-1a of a string: a flow's id from what both its ends know. */
export function flowId(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The longest a trace event waits in memory before it is written (ms): what a killed launcher can lose. */
export const FLUSH_MS = 200;

export class TraceWriter {
  private readonly fd: number;
  private readonly pids = new Map<string, number>();
  private readonly tids = new Map<string, number>();
  private closed = false;
  private pending = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
    writeSync(this.fd, '[\n');
  }

  /** The track of `actor` inside OS process `process` (both named in the trace the first time they appear). */
  private track(process: string, actor: string): { pid: number; tid: number } {
    const out: TraceEvent[] = [];
    let pid = this.pids.get(process);
    if (pid === undefined) {
      pid = this.pids.size + 1;
      this.pids.set(process, pid);
      out.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: 0, args: { name: process } });
      out.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: 0, args: { sort_index: pid } });
    }
    const key = `${process}\u0000${actor}`;
    let tid = this.tids.get(key);
    if (tid === undefined) {
      tid = this.tids.size + 1;
      this.tids.set(key, tid);
      out.push({ name: 'thread_name', ph: 'M', ts: 0, pid, tid, args: { name: actor } });
    }
    if (out.length > 0) this.write(out);
    return { pid, tid };
  }

  private write(events: TraceEvent[]): void {
    if (this.closed || events.length === 0) return;
    for (const e of events) this.pending += `${JSON.stringify(e)},\n`;
    if (this.pending.length > 64 * 1024) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS).unref();
  }

  /** Write what is pending: whole lines in one write, so a file cut short by a kill ends on a line. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    writeSync(this.fd, this.pending);
    this.pending = '';
  }

  /** Add what `e` shows on the timeline; `process` is the OS process it came from (its name: host-0-1, client, launcher). */
  add(e: RunEvent, process: string): void {
    if (this.closed) return;
    const { pid, tid } = this.track(process, e.actor);
    const at = { ts: e.at, pid, tid };
    this.write(timelineOf(e, at));
  }

  /** End the array: the file is then strict JSON. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    writeSync(this.fd, `${JSON.stringify({ name: 'trace_end', ph: 'M', ts: 0, pid: 0, tid: 0, args: {} })}\n]\n`);
    closeSync(this.fd);
  }
}

/** What event `e` shows on a timeline, at track `at` (its time, process and thread). */
function timelineOf(e: RunEvent, at: { ts: number; pid: number; tid: number }): TraceEvent[] {
  switch (e.kind) {
    case 'slice':
      return [{ name: e.name, ph: 'X', cat: 'phase', ...at, dur: e.dur, args: { step: e.step, attempt: e.attempt } }];
    case 'flow': {
      const id = flowId(`${e.tensor}|${e.from}|${e.to}|${e.step}|${e.attempt}`);
      const args = { step: e.step, attempt: e.attempt, from: e.from, to: e.to, bytes: e.bytes };
      return [
        e.end === 'send'
          ? { name: e.tensor, ph: 's', cat: e.tensor, id, ...at, args }
          : { name: e.tensor, ph: 'f', bp: 'e', cat: e.tensor, id, ...at, args },
      ];
    }
    case 'step':
      return [
        { name: `commit step ${e.step}`, ph: 'i', s: 't', cat: 'step', ...at, args: { attempt: e.attempt, paramsHash: e.paramsHash } },
        { name: 'loss', ph: 'C', ...at, args: { loss: e.loss } },
      ];
    case 'retry':
      return [
        {
          name: `retry step ${e.failure.step} attempt ${e.failure.attempt}`,
          ph: 'i',
          s: 'g',
          cat: 'retry',
          ...at,
          args: { kind: e.failure.kind, message: describeFailure(e.failure) },
        },
      ];
    case 'heal':
      return [{ name: `healed from ${e.from}`, ph: 'i', s: 't', cat: 'heal', ...at, args: { bytes: e.bytes, ms: e.ms, step: e.step } }];
    case 'exit':
      return [
        {
          name: e.restart === null ? `exited (${e.exit})` : `exited (${e.exit}); restart ${e.restart}`,
          ph: 'i',
          s: 'p',
          cat: 'process',
          ...at,
          args: { exit: e.exit, restart: e.restart },
        },
      ];
    case 'start':
      return e.restart === 0
        ? []
        : [{ name: `restarted (pid ${e.pid})`, ph: 'i', s: 'p', cat: 'process', ...at, args: { restart: e.restart } }];
    case 'fault':
      return [{ name: `fault: ${e.action}`, ph: 'i', s: 'g', cat: 'fault', ...at, args: { target: e.actor, detail: e.detail } }];
    case 'rejected':
      return [{ name: 'rejected', ph: 'i', s: 't', cat: 'rejected', ...at, args: e.counts }];
    case 'checkpoint':
      return [{ name: `checkpoint ${e.step}`, ph: 'i', s: 't', cat: 'checkpoint', ...at, args: { step: e.step } }];
    case 'restore':
      return [
        {
          name: `restore to ${e.checkpoint}`,
          ph: 'i',
          s: 'g',
          cat: 'restore',
          ...at,
          args: { atStep: e.atStep, checkpoint: e.checkpoint },
        },
      ];
    case 'run':
      return [{ name: `run ${e.state}`, ph: 'i', s: 'g', cat: 'run', ...at, args: { runId: e.runId, message: e.message } }];
  }
}

/**
 * The events of a trace file in the JSON array format, as a trace viewer
 * reads it: a missing closing `]` (a writer killed mid-run) is supplied, and
 * a trailing comma dropped. Throws SyntaxError when the text is not such a
 * trace.
 */
export function parseTrace(text: string): TraceEvent[] {
  let t = text.trim();
  if (!t.startsWith('[')) throw new SyntaxError('a trace in the JSON array format starts with [');
  if (!t.endsWith(']')) t = `${t.replace(/,\s*$/, '')}]`;
  const v: unknown = JSON.parse(t);
  if (!Array.isArray(v)) throw new SyntaxError('not a JSON array');
  return v as TraceEvent[];
}
