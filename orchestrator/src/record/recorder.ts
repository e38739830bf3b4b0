import { closeSync, existsSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  describeIssues,
  hostPhases,
  NOTABLE_KINDS,
  RunEvent,
  toMicros,
  type FailureReport,
  type PhaseTimes,
  type StepEvent,
} from '@lockstep/topology';
import type { StepLine } from '../protocol.ts';
import { TraceWriter } from './trace.ts';

/** The files a run leaves in its directory, written as it goes. */
export const RUN_FILES = {
  summary: 'summary.json',
  steps: 'steps.jsonl',
  events: 'events.jsonl',
  trace: 'trace.json',
} as const;

/** Epoch microseconds now, on the clock every process of the run stamps its events with. */
export const nowMicros = (): number => toMicros(performance.timeOrigin + performance.now());

export type RunEventListener = (e: RunEvent, process: string) => void;

/**
 * The record of one run, kept by the launcher: every process's run events
 * (validated; a child's output is outside input) and the launcher's own
 * (starts, exits, restarts, committed steps, faults the caller injects) go to
 *
 *   events.jsonl   the notable ones (retries, heals, restores, checkpoints, rejection bursts, exits, restarts, faults), one a line
 *   trace.json     the timeline (see TraceWriter)
 *   steps.jsonl    one line per committed step (a `step` event): its phase times, slowest and per host, and its retried attempts
 *   summary.json   what `train --json` prints, at the end
 *
 * and to every `subscribe`d listener (a live view). Each line is written with
 * one synchronous write, so a killed launcher leaves whole lines.
 */
export class RunRecorder {
  private readonly trace: TraceWriter;
  private readonly eventsFd: number;
  private readonly stepsFd: number;
  private readonly listeners = new Set<RunEventListener>();
  /** Committed steps waiting for their hosts' phase slices (the client's line can come before a host's last slice). */
  private pending: StepEvent[] = [];
  /** Phase times by attempt (`step/attempt`), then host actor. */
  private readonly hostTimes = new Map<string, Record<string, PhaseTimes>>();
  private readonly retried = new Map<number, FailureReport[]>();
  private invalid = 0;
  private closed = false;

  constructor(
    readonly runDir: string,
    private readonly o: { hosts: readonly string[]; log: Logger },
  ) {
    // a resumed run keeps its earlier timeline: trace.json -> trace.1.json (the first free number)
    const traceFile = join(runDir, RUN_FILES.trace);
    if (existsSync(traceFile)) {
      let n = 1;
      while (existsSync(join(runDir, `trace.${n}.json`))) n++;
      renameSync(traceFile, join(runDir, `trace.${n}.json`));
    }
    this.trace = new TraceWriter(traceFile);
    this.eventsFd = openSync(join(runDir, RUN_FILES.events), 'a');
    this.stepsFd = openSync(join(runDir, RUN_FILES.steps), 'a');
  }

  /** Listen to every event recorded from now on; returns the unsubscribe. */
  subscribe(fn: RunEventListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A line a role process wrote on its events pipe: parsed, validated, recorded (a bad one is counted and logged once). */
  take(line: string, process: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      value = undefined;
    }
    const r = RunEvent.safeParse(value);
    if (!r.success) {
      if (this.invalid++ === 0)
        this.o.log.warn(
          { process, line: line.slice(0, 200), problem: value === undefined ? 'not JSON' : describeIssues(r.error).join('; ') },
          'a process wrote a run event of the wrong shape; not recorded',
        );
      return;
    }
    this.record(r.data, process);
  }

  /** Record an event the launcher knows itself (or its caller: a fault injected). */
  record(e: RunEvent, process = 'launcher'): void {
    if (this.closed) return;
    if (NOTABLE_KINDS.includes(e.kind)) writeSync(this.eventsFd, `${JSON.stringify(e)}\n`);
    this.trace.add(e, process);
    if (e.kind === 'slice' && (hostPhases as readonly string[]).includes(e.name) && e.actor.startsWith('host/')) {
      const key = `${e.step}/${e.attempt}`;
      const hosts = this.hostTimes.get(key) ?? {};
      hosts[e.actor] = { ...hosts[e.actor], [e.name]: e.dur / 1000 };
      this.hostTimes.set(key, hosts);
      this.flushSteps(false);
    }
    if (e.kind === 'retry') this.retried.set(e.failure.step, [...(this.retried.get(e.failure.step) ?? []), e.failure]);
    for (const fn of this.listeners) fn(e, process);
  }

  /** A step the client committed (its line on stdout), recorded once its hosts' phase times are in. */
  step(l: StepLine): void {
    if (this.closed) return;
    this.pending.push({
      kind: 'step',
      actor: 'client',
      at: nowMicros(),
      step: l.step,
      attempt: l.attempt,
      loss: l.loss,
      paramsHash: l.paramsHash,
      podHashes: l.podHashes,
      podsAgree: l.podsAgree,
      phaseMs: l.phaseMs,
      hosts: {},
      retried: [],
      ms: l.ms,
      replayed: l.replayed ?? false,
    });
    this.flushSteps(false);
  }

  private complete(s: StepEvent): boolean {
    const hosts = this.hostTimes.get(`${s.step}/${s.attempt}`) ?? {};
    return this.o.hosts.every((h) => hostPhases.every((p) => hosts[h]?.[p] !== undefined));
  }

  /** Write the committed steps whose hosts have all reported every phase, in order; `all`: the rest too (the run is over). */
  private flushSteps(all: boolean): void {
    // a step whose host died mid-way never completes: written anyway once three later steps are waiting
    while (this.pending.length > 0 && (all || this.complete(this.pending[0]) || this.pending.length > 3)) {
      const s = this.pending.shift()!;
      const key = `${s.step}/${s.attempt}`;
      s.hosts = this.hostTimes.get(key) ?? {};
      s.retried = (this.retried.get(s.step) ?? []).filter((f) => f.attempt < s.attempt);
      this.hostTimes.delete(key);
      for (const k of this.hostTimes.keys()) if (Number(k.split('/')[0]) <= s.step) this.hostTimes.delete(k);
      writeSync(this.stepsFd, `${JSON.stringify(s)}\n`);
      this.trace.add(s, 'client');
      for (const fn of this.listeners) fn(s, 'client');
    }
  }

  /** Finish the files: the steps still waiting, `summary` as summary.json, the trace's closing bracket. */
  close(summary: unknown): void {
    if (this.closed) return;
    this.flushSteps(true);
    this.closed = true;
    writeFileSync(join(this.runDir, RUN_FILES.summary), `${JSON.stringify(summary, null, 2)}\n`);
    this.trace.close();
    closeSync(this.eventsFd);
    closeSync(this.stepsFd);
    this.listeners.clear();
  }
}
