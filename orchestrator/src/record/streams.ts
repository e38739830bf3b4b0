import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { describeIssues, RunEvent } from '@lockstep/topology';
import { ClientLine, type SummaryLine } from '../protocol.ts';
import { nowMicros, type RunRecorder } from './recorder.ts';

/** The most read from one stream file in one pass (bytes); the rest waits for the next. */
const MAX_READ = 4 * 1024 * 1024;

/**
 * The run record of processes no launcher started (containers: compose, the
 * testcontainers helper). Each role process appends its run events to its
 * own stream file (LOCKSTEP_STREAM_FILE: `<dir>/<process>.jsonl`), says
 * itself when it starts and exits, and the client copies its stdout lines
 * there (committed steps, its summary); whoever injects a fault from outside
 * appends it to a file of its own there (`faults.jsonl`). `poll` reads what
 * is new in every file, whole lines only, and hands it to the recorder as the
 * launcher would: events validated (a bad line is counted and logged once),
 * the client's committed steps, its summary (`onSummary`).
 *
 * A process killed leaves no exit line: when it starts again (a start with
 * `restart` > 0 after a start with no exit), its exit is recorded then.
 */
export class StreamCollector {
  private readonly files = new Map<string, { offset: number; partial: string }>();
  private readonly running = new Map<string, boolean>();
  private invalid = 0;

  constructor(
    private readonly dir: string,
    private readonly record: RunRecorder,
    private readonly o: { log: Logger; onSummary: (s: SummaryLine) => void },
  ) {}

  /** Whether every process that said it started has since said it exited (and at least one started). */
  allExited(): boolean {
    return this.running.size > 0 && [...this.running.values()].every((r) => !r);
  }

  /** Read every stream file's new whole lines and record them. Returns how many lines were read. */
  poll(): number {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.jsonl'));
    } catch {
      return 0; // not there yet: nothing started
    }
    let lines = 0;
    for (const name of names.sort()) {
      const state = this.files.get(name) ?? { offset: 0, partial: '' };
      this.files.set(name, state);
      let fd: number;
      try {
        fd = openSync(join(this.dir, name), 'r');
      } catch {
        continue;
      }
      try {
        const size = fstatSync(fd).size;
        if (size <= state.offset) continue;
        const buf = Buffer.alloc(Math.min(size - state.offset, MAX_READ));
        const n = readSync(fd, buf, 0, buf.length, state.offset);
        state.offset += n;
        const parts = (state.partial + buf.subarray(0, n).toString('utf8')).split('\n');
        state.partial = parts.pop() ?? '';
        const process = basename(name, '.jsonl');
        for (const line of parts) if (line.length > 0) this.take(line, process);
        lines += parts.length;
      } finally {
        closeSync(fd);
      }
    }
    return lines;
  }

  private bad(process: string, line: string, problem: string): void {
    if (this.invalid++ === 0)
      this.o.log.warn({ process, line: line.slice(0, 200), problem }, 'a stream line of the wrong shape; not recorded');
  }

  private take(line: string, process: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.bad(process, line, 'not JSON');
      return;
    }
    if (value && typeof value === 'object' && 'type' in value) {
      const l = ClientLine.safeParse(value);
      if (!l.success) {
        this.bad(process, line, describeIssues(l.error).join('; '));
        return;
      }
      if (l.data.type === 'step.committed') this.record.step(l.data);
      if (l.data.type === 'summary') this.o.onSummary(l.data);
      return;
    }
    const r = RunEvent.safeParse(value);
    if (!r.success) {
      this.bad(process, line, describeIssues(r.error).join('; '));
      return;
    }
    const e = r.data;
    if (e.kind === 'start') {
      // started again with no exit recorded since its last start: it was killed (no process writes its own SIGKILL)
      if (e.restart > 0 && this.running.get(e.actor))
        this.record.record(
          {
            kind: 'exit',
            actor: e.actor,
            at: Math.min(e.at, nowMicros()),
            exit: 'killed (seen when it started again)',
            restart: e.restart,
            expected: false,
          },
          process,
        );
      this.running.set(e.actor, true);
    }
    if (e.kind === 'exit') this.running.set(e.actor, false);
    this.record.record(e, process);
  }
}
