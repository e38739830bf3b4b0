import { createActor, fromCallback, fromPromise, type AnyActorRef } from 'xstate';
import { clientMachine } from './client/client.machine.ts';
import { hostMachine } from './host/host.machine.ts';
import { podMachine } from './pod/pod.machine.ts';
import { outOf, type RecordedOut, type RecordLine } from './record.ts';
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
}

/** Split an actor's record into its lives: each begins with its machine's input. */
export function livesOf(lines: RecordLine[]): RecordLine[][] {
  const lives: RecordLine[][] = [];
  for (const l of lines) {
    if ('input' in l) lives.push([l]);
    else lives.at(-1)?.push(l);
  }
  return lives;
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
      const out = outOf(cmd);
      if (out) replayed.push(out);
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
    const actors = { wire, clock: idle, disk: idle, forwardPass: never, backwardPass: never, applyUpdate: never, loadCheckpoint: never };
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
      a.send(l.in);
    }
  }
  a.stop();
  if (error) throw new Error(`${actor}: the replayed machine threw: ${(error as Error).message ?? error}`);
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
