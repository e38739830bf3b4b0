import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { createActor } from 'xstate';
import { actorNames, subjects, type Topology } from '@lockstep/topology';
import type { Logger } from 'pino';
import { heartbeats, untilStopped } from '../lifecycle.ts';
import { answerPings, waitForPeers } from '../readiness.ts';
import { edgeFor } from '../wire/edge.ts';
import { lostHosts, podMachine, silentHosts } from './pod.machine.ts';

export interface PodRun {
  /** Resolves when every host of the pod has answered and reached its own peers. */
  ready: Promise<void>;
  done: Promise<void>;
  stop(): void;
}

/** Connect a pod scheduler machine to NATS. */
export function runPod(opts: {
  nc: NatsConnection;
  topology: Topology;
  runId: string;
  pod: number;
  log: Logger;
  rejoin?: boolean;
}): PodRun {
  const { nc, topology: t, runId, pod } = opts;
  const me = actorNames.pod(pod);
  const log = opts.log.child({ actor: me });
  const wire = edgeFor(t, 'pod', {
    nc,
    runId,
    log,
    listen: [
      { subject: subjects.podCmd(runId, pod), channel: { on: 'pod.cmd', pod } },
      { subject: subjects.podReport(runId, pod), channel: { on: 'pod.report', pod, hosts: t.hostsPerPod } },
    ],
  });
  const actor = createActor(podMachine.provide({ actors: { wire } }), { input: { topology: t, runId, pod, rejoin: opts.rejoin } });
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
  // heartbeats to the client: alive, and in which phase
  const heartbeat = heartbeats({
    nc,
    subject: subjects.clientReport(runId),
    me,
    kind: 'pod.heartbeat',
    everyMs: t.heartbeat.intervalMs,
    state: () => actor.getSnapshot().context,
    hosts: () => ({ silent: silentHosts(actor.getSnapshot().context), lost: lostHosts(actor.getSnapshot().context) }),
    log,
  });
  const done = untilStopped(actor, {
    nc,
    log,
    name: 'pod',
    cleanup: () => {
      heartbeat.stop();
      pingSub?.unsubscribe();
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
