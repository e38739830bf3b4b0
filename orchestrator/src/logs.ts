import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { prettyFactory } from 'pino-pretty';
import { UsageError } from './errors.ts';
import { describeRun } from './record/runs.ts';

/**
 * `lockstep logs <run>`: every process's log of a run (`<run>/logs/*.log`:
 * the role processes' pino JSON lines and the nats-servers' text lines),
 * merged in time order and printed readably with pino-pretty, each line
 * named by its process (and actor). `follow` keeps printing what the
 * processes write until the run ends; `actor` keeps one actor's or one
 * process's lines (`host/0/1`, `client`, `host-0-1`, `nats-pod-0`).
 */
export interface LogLine {
  /** Epoch milliseconds. */
  time: number;
  process: string;
  /** The pino object, with `process` added (a nats-server line becomes { time, level, msg }). */
  value: Record<string, unknown>;
}

const NATS_LEVELS: Record<string, number> = { TRC: 10, DBG: 20, INF: 30, WRN: 40, ERR: 50, FTL: 60 };
/** A nats-server log line: `[pid] 2026/11/30 10:48:55.278599 [INF] text` (local time). */
const NATS_LINE = /^\[\d+\] (\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6}) \[([A-Z]{3})\] (.*)$/;

/** One line of `process`'s log as a LogLine; `prev` (the time of the line before it) for lines that carry none. */
export function parseLogLine(text: string, process: string, prev: number): LogLine | undefined {
  if (text.trim().length === 0) return undefined;
  if (text.startsWith('{')) {
    try {
      const v = JSON.parse(text) as Record<string, unknown>;
      const t = typeof v.time === 'number' ? v.time : typeof v.time === 'string' ? Date.parse(v.time) : Number.NaN;
      return { time: Number.isFinite(t) ? t : prev, process, value: { ...v, time: Number.isFinite(t) ? t : prev, process } };
    } catch {
      // not JSON after all: kept as text below
    }
  }
  const m = NATS_LINE.exec(text);
  if (m) {
    const [, y, mo, d, h, mi, s, frac, lvl, msg] = m;
    const time = new Date(+y, +mo - 1, +d, +h, +mi, +s, Math.floor(Number(`0.${frac}`) * 1000)).getTime();
    return { time, process, value: { time, level: NATS_LEVELS[lvl] ?? 30, process, msg } };
  }
  return { time: prev, process, value: { time: prev, level: 30, process, msg: text } };
}

/** Whether a line belongs to `actor` (an actor's name, or a process's). */
function belongs(l: LogLine, actor: string | undefined): boolean {
  if (actor === undefined) return true;
  if (l.value.actor === actor || l.process === actor) return true;
  // a process's own lines (no actor field) belong to the actors it runs: host-0-1 runs host/0/1, host-0-0..3 runs host/0/0 to host/0/3
  if (l.value.actor !== undefined) return false;
  const m = /^host\/(\d+)\/(\d+)$/.exec(actor);
  const p = /^host-(\d+)-(\d+)(?:\.\.(\d+))?$/.exec(l.process);
  if (m && p) return m[1] === p[1] && +m[2] >= +p[2] && +m[2] <= +(p[3] ?? p[2]);
  const pod = /^pod\/(\d+)$/.exec(actor);
  return (pod !== null && l.process === `pod-${pod[1]}`) || (actor === 'client' && l.process === 'client');
}

/** Reads a growing file from where it last stopped, whole lines only. */
class Tail {
  private offset = 0;
  private rest = '';
  private last = 0;
  constructor(
    private readonly file: string,
    readonly process: string,
  ) {}

  read(): LogLine[] {
    let size: number;
    try {
      size = statSync(this.file).size;
    } catch {
      return [];
    }
    if (size <= this.offset) return [];
    const buf = Buffer.alloc(size - this.offset);
    const fd = openSync(this.file, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset = size;
    const text = this.rest + buf.toString('utf8');
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    const out: LogLine[] = [];
    for (const t of lines) {
      const l = parseLogLine(t, this.process, this.last);
      if (!l) continue;
      this.last = l.time;
      out.push(l);
    }
    return out;
  }
}

export interface LogsOptions {
  follow?: boolean;
  actor?: string;
  /** Colors (default: when stdout is a terminal). */
  colorize?: boolean;
  write?: (s: string) => void;
  /** With follow: how often to look for new lines (ms), and the longest to follow (ms) before giving up. */
  pollMs?: number;
  maxMs?: number;
}

/** Print a run's merged log; with `follow`, until the run is over (or `maxMs`). Resolves with the lines printed. */
export async function printLogs(runDir: string, o: LogsOptions = {}): Promise<number> {
  const dir = join(runDir, 'logs');
  if (!existsSync(dir)) throw new UsageError(`logs: ${runDir} has no logs directory`);
  const write = o.write ?? ((s: string) => process.stdout.write(s));
  const pretty = prettyFactory({
    colorize: o.colorize ?? Boolean(process.stdout.isTTY),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,run,role,process,actor',
    messageFormat: '{process}{if actor} {actor}{end}: {msg}',
    singleLine: true,
  });
  const tails = new Map<string, Tail>();
  const scan = () => {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.log'))) {
      if (!tails.has(f)) tails.set(f, new Tail(join(dir, f), f.replace(/\.log$/, '')));
    }
  };
  let printed = 0;
  let known = o.actor === undefined;
  const flush = () => {
    scan();
    const read = [...tails.values()].flatMap((t) => t.read());
    if (!known) known = read.some((l) => l.value.actor === o.actor || l.process === o.actor);
    const lines = read.filter((l) => belongs(l, o.actor)).sort((a, b) => a.time - b.time);
    for (const l of lines) {
      // a process that runs one actor of the same name (client) is named once
      const value = l.value.actor === l.process ? { ...l.value, actor: undefined } : l.value;
      write(pretty(value));
    }
    printed += lines.length;
  };
  flush();
  // a name the run does not have (a typo, host/9/9 on tiny) printed nothing, and said nothing of why
  if (!o.follow && !known && printed === 0)
    throw new UsageError(
      `--actor: ${o.actor} is not in this run's logs; its processes: ${[...tails.values()]
        .map((t) => t.process)
        .sort()
        .join(', ')}`,
    );
  if (!o.follow) return printed;
  const deadline = Date.now() + (o.maxMs ?? 24 * 3600_000);
  while (describeRun(runDir).outcome === 'running' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, o.pollMs ?? 250));
    flush();
  }
  flush();
  return printed;
}
