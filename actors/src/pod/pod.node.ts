import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { createActor } from 'xstate';
import { actorNames, subjects, type Topology } from '@lockstep/topology';
import type { Logger } from 'pino';
import { systemClock, ticker } from '../clock.ts';
import { untilStopped } from '../lifecycle.ts';
import { answerPings, waitForPeers } from '../readiness.ts';
import { processIncarnation } from '../rejects.ts';
import { edgeFor, natsTransport } from '../wire/edge.ts';
import { listenFor } from '../wire/listen.ts';
import { podMachine } from './pod.machine.ts';
import { recorder } from '../record.ts';

export interface PodRun {
  /** Resolves when every host of the pod has answered and reached its own peers. */
  ready: Promise<void>;
  done: Promise<void>;
  stop(): void;
}

const incarnation = processIncarnation();

/** Connect a pod scheduler machine to NATS: provide its edge and clock, and answer the start-up handshake. */
export function runPod(opts: {
  nc: NatsConnection;
  topology: Topology;
  runId: string;
  pod: number;
  log: Logger;
  rejoin?: boolean;
  /** Record every event the machine takes and every message it sends here, for `lockstep replay`. */
  recordDir?: string;
}): PodRun {
  const { nc, topology: t, runId, pod } = opts;
  const me = actorNames.pod(pod);
  const log = opts.log.child({ actor: me });
  const clock = systemClock;
  const wire = edgeFor(t, 'pod', {
    transport: natsTransport(nc, log),
    clock,
    runId,
    log,
    listen: listenFor(t, runId, { role: 'pod', pod }),
  });
  const input = { topology: t, runId, pod, incarnation, rejoin: opts.rejoin, now: clock.now() };
  const rec = opts.recordDir ? recorder(opts.recordDir, me, input) : undefined;
  const actor = createActor(podMachine.provide({ actors: { wire, clock: ticker(clock) } }), { input, clock, inspect: rec?.inspect });
  let last = '';
  actor.subscribe((s) => {
    const key = `${s.context.step}/${s.context.phase}`;
    if (key !== last) {
      last = key;
      log.debug({ step: s.context.step, attempt: s.context.attempt, phase: s.context.phase }, 'phase');
      if (s.context.phase === 'failed') log.error({ step: s.context.step, failure: s.context.failure }, 'step failed in this pod');
    }
  });
  let pingSub: Subscription | undefined;
  // subscribe to errors before start, so nothing the actor throws goes unhandled
  const done = untilStopped(actor, {
    nc,
    log,
    name: 'pod',
    cleanup: () => {
      pingSub?.unsubscribe();
      rec?.close();
    },
  });
  actor.start();

  let hostsReady = false;
  const hosts = Array.from({ length: t.hostsPerPod }, (_, h) => ({
    name: actorNames.host(pod, h),
    subject: subjects.hostPing(runId, pod, h),
  }));
  pingSub = answerPings(
    nc,
    subjects.podPing(runId, pod),
    runId,
    me,
    () => ({ ready: hostsReady, waitingFor: hostsReady ? [] : hosts.map((h) => h.name) }),
    log,
  );
  const ready = waitForPeers(nc, { runId, me, peers: hosts, deadlineMs: t.deadlines.startupMs, needReady: true, log }).then(() => {
    hostsReady = true;
    log.info({ hosts: hosts.length }, 'pod ready');
  });
  return { ready, done, stop: () => actor.stop() };
}
