import {
  actorNames,
  hostPhases,
  type FailureReport,
  type HostHeartbeat,
  type PodHeartbeat,
  type RunEvent,
  type SliceEvent,
  type StepCommitted,
  type Topology,
} from '@lockstep/topology';
import { processName } from '../faults.ts';
import type { EventLine, LiveStatus, ProcessStatus } from './status.ts';

/** The newest route counters of pod 0's server (nats-server's /routez), summed over its routes. */
export interface RouteCounters {
  inBytes: number;
  outBytes: number;
  inMsgs: number;
  outMsgs: number;
}

/** What the live view tells its watchers (the page's server-sent events): a committed step, a retry, a restart, a heal... */
export type LiveListener = (kind: string, data: unknown) => void;

const MAX_HISTORY = 2000;
const MAX_EVENTS = 200;
const MAX_RETRIES = 200;
const KEPT_ATTEMPTS = 4;

interface Heard {
  phase: string;
  step: number;
  attempt: number;
  at: number;
}

/**
 * The state of one run as the status page shows it, built from what the
 * launcher records (run events: steps, retries, exits, restarts, heals,
 * faults, the hosts' phase slices), the hosts' and pods' heartbeats (read by
 * the observer), and pod 0's route counters. Every input carries or is given
 * its time (epoch ms); `status(now)` is a pure read.
 */
export class LiveRun {
  private state: LiveStatus['state'] = 'starting';
  private message: string | null = null;
  private readonly heard = new Map<string, Heard & { ready?: boolean; silentHosts?: number[] }>();
  private readonly processes = new Map<string, ProcessStatus>();
  private readonly heals = new Map<string, { count: number; last: LiveStatus['hosts'][number]['lastHeal'] }>();
  private readonly history: LiveStatus['history'] = [];
  private readonly retries: FailureReport[] = [];
  private readonly events: EventLine[] = [];
  private readonly slices = new Map<string, SliceEvent[]>();
  private last: { step: number; paramsHash: string; podHashes: string[]; podsAgree: boolean } | undefined;
  private route: { counters: RouteCounters; at: number; bytesPerSecond: number | null } | undefined;
  private readonly listeners = new Set<LiveListener>();

  constructor(
    private readonly o: {
      topology: Topology;
      runId: string;
      steps: number;
      /** The processes' starts, exits and restarts are heard (a launcher's supervisor, or their streams in containers). */
      supervised: boolean;
      /** The page's kill buttons work (default: `supervised`). */
      killable?: boolean;
    },
  ) {
    const t = o.topology;
    const names = [...Array.from({ length: t.pods }, (_, p) => `pod-${p}`), ...this.hostIds().map((h) => processName(t, h)), 'client'];
    // watching from outside (compose), processes are not seen: they are taken to run
    const state = o.supervised ? 'starting' : 'running';
    for (const name of names) this.processes.set(name, { name, pid: null, restarts: 0, state });
  }

  /** Hear what happens from now on: `kind` is a run event's kind (step, retry, heal, exit, start, fault, run ...) or `status`. */
  subscribe(fn: LiveListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(kind: string, data: unknown): void {
    for (const fn of this.listeners) fn(kind, data);
  }

  private hostIds(): string[] {
    const t = this.o.topology;
    return Array.from({ length: t.pods * t.hostsPerPod }, (_, i) => actorNames.host(Math.floor(i / t.hostsPerPod), i % t.hostsPerPod));
  }

  private note(at: number, actor: string, kind: string, text: string): void {
    const line = { at, actor, kind, text };
    this.events.push(line);
    if (this.events.length > MAX_EVENTS) this.events.shift();
    this.emit(kind, line);
  }

  /** A run event the launcher recorded (`at` in epoch microseconds). */
  onEvent(e: RunEvent): void {
    const at = e.at / 1000;
    switch (e.kind) {
      case 'slice': {
        if (!e.actor.startsWith('host/') || !(hostPhases as readonly string[]).includes(e.name)) return;
        const key = `${e.step}/${e.attempt}`;
        const list = this.slices.get(key) ?? [];
        list.push(e);
        this.slices.set(key, list);
        while (this.slices.size > KEPT_ATTEMPTS) this.slices.delete(this.slices.keys().next().value!);
        return;
      }
      case 'step': {
        if (e.replayed) return;
        this.state = 'running';
        this.history.push({ step: e.step, attempt: e.attempt, loss: e.loss, ms: e.ms });
        if (this.history.length > MAX_HISTORY) this.history.shift();
        this.last = { step: e.step, paramsHash: e.paramsHash, podHashes: e.podHashes, podsAgree: e.podsAgree };
        this.emit('step', { step: e.step, attempt: e.attempt, loss: e.loss, ms: e.ms, podsAgree: e.podsAgree });
        return;
      }
      case 'retry':
        this.retries.push(e.failure);
        if (this.retries.length > MAX_RETRIES) this.retries.shift();
        this.note(at, e.actor, 'retry', `step ${e.failure.step} attempt ${e.failure.attempt} retried: ${e.failure.message}`);
        break;
      case 'heal': {
        const h = this.heals.get(e.actor) ?? { count: 0, last: null };
        this.heals.set(e.actor, { count: h.count + 1, last: { from: e.from, bytes: e.bytes, ms: e.ms, step: e.step } });
        this.note(at, e.actor, 'heal', `healed from ${e.from}: ${e.bytes} bytes in ${e.ms.toFixed(1)} ms (step ${e.step})`);
        break;
      }
      case 'start': {
        const p = this.processes.get(e.actor);
        if (p) Object.assign(p, { pid: e.pid, restarts: e.restart, state: 'running' });
        if (e.restart > 0) this.note(at, e.actor, 'restart', `restarted (restart ${e.restart}, pid ${e.pid})`);
        return;
      }
      case 'exit': {
        const p = this.processes.get(e.actor);
        if (p) p.state = e.restart === null ? 'exited' : 'restarting';
        if (!e.expected) this.note(at, e.actor, 'exit', `exited (${e.exit})${e.restart === null ? '' : `; restart ${e.restart} follows`}`);
        return;
      }
      case 'fault':
        this.note(at, e.actor, 'fault', `${e.action}${e.detail ? `: ${e.detail}` : ''}`);
        break;
      case 'restore':
        this.note(at, e.actor, 'restore', `rolled back to checkpoint ${e.checkpoint} at step ${e.atStep}`);
        break;
      case 'checkpoint':
        this.note(at, e.actor, 'checkpoint', `checkpoint of step ${e.step} written`);
        break;
      case 'rejected': {
        const parts = Object.entries(e.counts).map(([r, n]) => `${n} ${r}`);
        this.note(at, e.actor, 'rejected', `rejected ${parts.join(', ')}`);
        break;
      }
      case 'run':
        if (e.state === 'started') this.state = 'starting';
        else {
          this.state = e.state;
          this.message = e.message ?? null;
        }
        this.note(at, e.actor, 'run', `run ${e.state}${e.message ? `: ${e.message}` : ''}`);
        break;
      default:
        return;
    }
  }

  /**
   * A committed step the client published for observers (`step.committed` on the progress subject), when no run record
   * is at hand (watching a run from outside): as a step without phase times. Returns the step it recorded, if new.
   */
  onCommitted(m: StepCommitted, at: number): Extract<RunEvent, { kind: 'step' }> | undefined {
    if (this.last && m.step <= this.last.step) return undefined; // a restarted client may publish its last commit again
    const step: Extract<RunEvent, { kind: 'step' }> = {
      kind: 'step',
      actor: 'client',
      at: Math.round(at * 1000),
      step: m.step,
      attempt: m.attempt,
      loss: m.loss,
      paramsHash: m.paramsHash,
      // a commit needs every pod's hash equal to the one published
      podHashes: m.podsAgree ? Array.from({ length: this.o.topology.pods }, () => m.paramsHash) : [],
      podsAgree: m.podsAgree,
      phaseMs: {},
      hosts: {},
      retried: [],
      ms: m.ms,
      replayed: false,
    };
    this.onEvent(step);
    if (m.step + 1 >= this.o.steps) this.finish('finished');
    return step;
  }

  /** A heartbeat the observer heard at `at` (epoch ms). */
  onHeartbeat(m: HostHeartbeat | PodHeartbeat, at: number): void {
    const heard = { phase: m.phase, step: m.step, attempt: m.attempt, at };
    if (m.kind === 'pod.heartbeat') this.heard.set(m.sender, { ...heard, ready: m.ready, silentHosts: m.silentHosts });
    else this.heard.set(m.sender, heard);
  }

  /** Pod 0's route counters at `at` (epoch ms): bytes/s is taken over the time since the last ones. */
  onRoutes(c: RouteCounters, at: number): void {
    const prev = this.route;
    const bytesPerSecond =
      prev && at > prev.at
        ? Math.max(0, (c.inBytes + c.outBytes - prev.counters.inBytes - prev.counters.outBytes) / ((at - prev.at) / 1000))
        : null;
    this.route = { counters: c, at, bytesPerSecond };
  }

  /** The run is over (the launcher returned or threw). */
  finish(state: 'finished' | 'failed', message?: string): void {
    this.state = state;
    if (message !== undefined) this.message = message;
  }

  /** The newest attempt with slices from every host in every phase (else the newest with any), as a timeline. */
  private timeline(): LiveStatus['timeline'] {
    const hosts = this.hostIds();
    const keys = [...this.slices.keys()].reverse();
    const complete = keys.find((k) => {
      const got = new Set(this.slices.get(k)!.map((s) => `${s.actor} ${s.name}`));
      return hosts.every((h) => hostPhases.every((p) => got.has(`${h} ${p}`)));
    });
    // else the newest attempt every host has a slice of (streams read a file at a time bring one host's newest first)
    const everyHost = keys.find((k) => {
      const got = new Set(this.slices.get(k)!.map((s) => s.actor));
      return hosts.every((h) => got.has(h));
    });
    const key = complete ?? everyHost ?? keys[0];
    if (key === undefined) return null;
    const list = this.slices.get(key)!;
    const t0 = Math.min(...list.map((s) => s.at));
    const [step, attempt] = key.split('/').map(Number);
    return {
      step,
      attempt,
      slices: list
        .map((s) => ({ host: s.actor, phase: s.name, startMs: (s.at - t0) / 1000, durMs: s.dur / 1000 }))
        .sort((a, b) => a.host.localeCompare(b.host) || a.startMs - b.startMs),
    };
  }

  /** The status at `now` (epoch ms). */
  status(now: number): LiveStatus {
    const t = this.o.topology;
    const age = (h: Heard | undefined) => (h ? Math.max(0, now - h.at) : null);
    const proc = (name: string): ProcessStatus => ({
      ...(this.processes.get(name) ?? { name, pid: null, restarts: 0, state: 'starting' }),
    });
    return {
      runId: this.o.runId,
      topology: t.name,
      pods: t.pods,
      hostsPerPod: t.hostsPerPod,
      steps: this.o.steps,
      committed: this.history.length,
      state: this.state,
      message: this.message,
      lastStep: this.last?.step ?? null,
      paramsHash: this.last?.paramsHash ?? null,
      podHashes: this.last?.podHashes ?? [],
      podsAgree: this.last?.podsAgree ?? null,
      podStatus: Array.from({ length: t.pods }, (_, p) => {
        const h = this.heard.get(actorNames.pod(p));
        return {
          id: actorNames.pod(p),
          pod: p,
          phase: h?.phase ?? null,
          step: h?.step ?? null,
          attempt: h?.attempt ?? null,
          heartbeatAgeMs: age(h),
          ready: h?.ready ?? null,
          silentHosts: h?.silentHosts ?? [],
          process: proc(`pod-${p}`),
        };
      }),
      hosts: this.hostIds().map((id) => {
        const [, p, i] = id.split('/').map(Number);
        const h = this.heard.get(id);
        const heal = this.heals.get(id);
        return {
          id,
          pod: p,
          host: i,
          phase: h?.phase ?? null,
          step: h?.step ?? null,
          attempt: h?.attempt ?? null,
          heartbeatAgeMs: age(h),
          process: proc(processName(t, id)),
          heals: heal?.count ?? 0,
          lastHeal: heal?.last ?? null,
        };
      }),
      timeline: this.timeline(),
      history: [...this.history],
      retries: [...this.retries],
      dcn: this.route ? { ...this.route.counters, bytesPerSecond: this.route.bytesPerSecond } : null,
      events: [...this.events],
      canKill: (this.o.killable ?? this.o.supervised) && (this.state === 'starting' || this.state === 'running'),
    };
  }
}
