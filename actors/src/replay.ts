import { createActor, fromCallback, fromPromise, type AnyActorRef } from 'xstate';
import { clientMachine } from './client/client.machine.ts';
import { hostMachine } from './host/host.machine.ts';
import { podMachine } from './pod/pod.machine.ts';
import { outsOf, type RecordedOut, type RecordLine } from './record.ts';
import { SimClock } from './sim/clock.ts';
import type { WireCommand } from './wire/edge.ts';

type Out = RecordedOut;

export interface ReplayResult {
  actor: string;
  /** Lives of the actor in the record (a restarted process starts a new one). */
  life: number;
  events: number;
  recorded: number;
  replayed: number;
  /** The first message the replayed machine sent differently from the recorded one, if any. */
  divergence?: { index: number; recorded: Out | undefined; replayed: Out | undefined };
  /** The replayed machine threw on the recorded events. */
  error?: string;
}

/** Split an actor's record into its lives: each begins with its machine's input. Throws when a line comes before any input. */
export function livesOf(lines: RecordLine[]): RecordLine[][] {
  const lives: RecordLine[][] = [];
  lines.forEach((l, i) => {
    if ('input' in l) lives.push([l]);
    else if (lives.length === 0) throw new Error(`line ${i + 1}: comes before the machine's input (the record's first line)`);
    else lives[lives.length - 1].push(l);
  });
  return lives;
}

/** Why a decoded line is not a record line, or undefined. */
export function recordLineProblem(v: unknown): string | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not an object';
  const keys = Object.keys(v);
  if (keys.length !== 1 || !['input', 'in', 'out'].includes(keys[0])) return 'must have exactly one of input, in, out';
  const o = v as Record<string, unknown>;
  if ('input' in o) {
    const i = o.input as { runId?: unknown; topology?: { pods?: unknown; hostsPerPod?: unknown }; incarnation?: unknown } | null;
    if (!i || typeof i !== 'object' || typeof i.runId !== 'string' || typeof i.incarnation !== 'string')
      return 'input: must hold runId and incarnation';
    if (!i.topology || !Number.isInteger(i.topology.pods) || !Number.isInteger(i.topology.hostsPerPod))
      return 'input: must hold the topology';
    return undefined;
  }
  if ('in' in o) {
    const e = o.in as { type?: unknown } | null;
    return e && typeof e === 'object' && typeof e.type === 'string' && e.type.length > 0 ? undefined : 'in: must be an event with a type';
  }
  const out = o.out as { kind?: unknown; step?: unknown; attempt?: unknown; hash?: unknown } | null;
  if (!out || typeof out.kind !== 'string' || !Number.isInteger(out.step) || !Number.isInteger(out.attempt))
    return 'out: must hold kind, step and attempt';
  if (out.hash !== undefined && typeof out.hash !== 'string') return 'out: hash must be a string';
  return undefined;
}

/** The actors a run of this topology has: the client, every pod scheduler, every host. */
export function actorsOf(t: { pods: number; hostsPerPod: number }): string[] {
  const out = ['client'];
  for (let p = 0; p < t.pods; p++) out.push(`pod/${p}`);
  for (let p = 0; p < t.pods; p++) for (let h = 0; h < t.hostsPerPod; h++) out.push(`host/${p}/${h}`);
  return out;
}

/**
 * Feed one life of a recorded actor to a fresh machine of its kind, in the
 * recorded order (its computations' results and its delays firing included,
 * so nothing is computed or timed again), and compare what it sends with what
 * the real actor sent. A machine decides only from what it is told, so the
 * two must be the same message for message.
 */
export function replayLife(actor: string, life: number, lines: RecordLine[]): ReplayResult {
  const [first, ...rest] = lines;
  if (!first || !('input' in first)) throw new Error(`${actor}: a life must begin with its input`);
  const replayed: Out[] = [];
  const wire = fromCallback<WireCommand>(({ receive }) => {
    receive((cmd) => {
      replayed.push(...outsOf(cmd));
    });
  });
  // stand-ins for every provided actor but the wire: whatever they said is in the record
  // (typed loosely: each stands for a different provided actor's logic)
  const idle = fromCallback(() => {}) as never;
  const never = fromPromise(() => new Promise<never>(() => {})) as never;
  const clock = new SimClock(); // never advanced: every delay that fired is in the record
  const input = first.input as never;
  let a: AnyActorRef;
  if (actor.startsWith('host/')) {
    const actors = {
      wire,
      clock: idle,
      disk: idle,
      forwardPass: never,
      backwardPass: never,
      applyUpdate: never,
      phaseFloor: never,
      loadCheckpoint: never,
    };
    a = createActor(hostMachine.provide({ actors }), { input, clock });
  } else if (actor.startsWith('pod/')) a = createActor(podMachine.provide({ actors: { wire, clock: idle } }), { input, clock });
  else a = createActor(clientMachine.provide({ actors: { wire, clock: idle, runlog: idle, checkpoints: idle } }), { input, clock });
  let error: unknown;
  a.subscribe({ error: (e) => (error ??= e) });
  a.start();
  const recorded: Out[] = [];
  let events = 0;
  for (const l of rest) {
    if ('out' in l) recorded.push(l.out);
    else if ('in' in l) {
      events++;
      try {
        a.send(l.in);
      } catch (err) {
        error ??= err;
      }
    }
  }
  a.stop();
  if (error) {
    // a machine that throws on recorded input did not decide the same
    return {
      actor,
      life,
      events,
      recorded: recorded.length,
      replayed: replayed.length,
      divergence: { index: replayed.length, recorded: recorded[replayed.length], replayed: undefined },
      error: String((error as Error).message ?? error),
    };
  }
  const n = Math.max(recorded.length, replayed.length);
  let divergence: ReplayResult['divergence'];
  for (let i = 0; i < n; i++) {
    const r = recorded[i];
    const p = replayed[i];
    if (!r || !p || r.kind !== p.kind || r.step !== p.step || r.attempt !== p.attempt || r.hash !== p.hash) {
      divergence = { index: i, recorded: r, replayed: p };
      break;
    }
  }
  return { actor, life, events, recorded: recorded.length, replayed: replayed.length, divergence };
}
