import type { NatsConnection } from '@nats-io/transport-node';
import { createActor } from 'xstate';
import { actorNames, type Topology } from '@lockstep/topology';
import type { Logger } from 'pino';
import { systemClock, ticker } from '../clock.ts';
import { untilStopped } from '../lifecycle.ts';
import { processIncarnation } from '../rejects.ts';
import { edgeFor, natsTransport, type Transport } from '../wire/edge.ts';
import { listenFor } from '../wire/listen.ts';
import { podMachine } from './pod.machine.ts';
import { recorder } from '../record.ts';
import { phaseSlices, rejectionBursts, type EventSink } from '../events.ts';

export interface PodRun {
  done: Promise<void>;
  stop(): void;
}

const incarnation = processIncarnation();

/** Connect a pod scheduler machine to NATS: provide its edge and clock. */
export function runPod(opts: {
  nc: NatsConnection;
  topology: Topology;
  runId: string;
  pod: number;
  log: Logger;
  rejoin?: boolean;
  /** Record every event the machine takes and every message it sends here, for `lockstep replay`. */
  recordDir?: string;
  /** Where this pod's run events go (its phase slices, rejection bursts): the launcher's record. */
  events?: EventSink;
  /** The process's wire (see ProcessWire: batch frames to and from its pod's host processes); absent: straight to NATS. */
  transport?: Transport;
}): PodRun {
  const { nc, topology: t, runId, pod } = opts;
  const me = actorNames.pod(pod);
  const log = opts.log.child({ actor: me });
  const clock = systemClock;
  const wire = edgeFor(t, 'pod', {
    transport: opts.transport ?? natsTransport(nc, log),
    clock,
    runId,
    log,
    listen: listenFor(t, runId, { role: 'pod', pod }),
  });
  const input = { topology: t, runId, pod, incarnation, rejoin: opts.rejoin, now: clock.now() };
  const rec = opts.recordDir ? recorder(opts.recordDir, me, input) : undefined;
  const actor = createActor(podMachine.provide({ actors: { wire, clock: ticker(clock) } }), { input, clock, inspect: rec?.inspect });
  let last = '';
  const slices = opts.events ? phaseSlices(opts.events, me, clock) : undefined;
  const bursts = opts.events ? rejectionBursts(opts.events, me, clock) : undefined;
  actor.subscribe((s) => {
    slices?.(s.context);
    bursts?.note(s.context.rejected);
    if (s.context.phase === 'stopped') bursts?.flush();
    const key = `${s.context.step}/${s.context.phase}`;
    if (key !== last) {
      last = key;
      log.debug({ step: s.context.step, attempt: s.context.attempt, phase: s.context.phase }, 'phase');
      if (s.context.phase === 'failed') log.error({ step: s.context.step, failure: s.context.failure }, 'step failed in this pod');
    }
  });
  // subscribe to errors before start, so nothing the actor throws goes unhandled
  const done = untilStopped(actor, { nc, log, name: 'pod', cleanup: () => rec?.close() });
  actor.start();

  return { done, stop: () => actor.stop() };
}
