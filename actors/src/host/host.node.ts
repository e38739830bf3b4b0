import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { createActor } from 'xstate';
import { actorNames, shardRange, parameterCount, subjects, type TensorKind, type Topology } from '@lockstep/topology';
import type { Logger } from 'pino';
import { heartbeats, untilStopped } from '../lifecycle.ts';
import { answerPings, waitForPeers } from '../readiness.ts';
import { edgeFor } from '../wire/edge.ts';
import { hostMachine } from './host.machine.ts';

export interface HostRun {
  /** Resolves when every peer (in-pod and cross-pod) answers. */
  ready: Promise<void>;
  /** Resolves after run.end, once the final counts are flushed to the pod. */
  done: Promise<void>;
  stop(): void;
}

/** Connect one host machine to NATS: its edge, its ping answers, its start-up handshake. */
export function runHost(opts: { nc: NatsConnection; topology: Topology; runId: string; pod: number; host: number; log: Logger }): HostRun {
  const { nc, topology: t, runId, pod, host } = opts;
  const me = actorNames.host(pod, host);
  const log = opts.log.child({ actor: me });
  const size = parameterCount(t.model);
  const lengthOf = (shard: number) => {
    const r = shardRange(size, t.hostsPerPod, shard);
    return r.end - r.start;
  };
  const expectedLength = (tensor: TensorKind, shard: number): number | undefined => {
    if (shard >= t.hostsPerPod) return undefined;
    if (tensor !== 'param.shard' && shard !== host) return undefined;
    return lengthOf(shard);
  };
  const wire = edgeFor(t, 'host', {
    nc,
    runId,
    log,
    expectedLength,
    listen: [
      { subject: subjects.hostCmd(runId, pod, host), channel: { on: 'host.cmd', pod, host } },
      { subject: subjects.hostData(runId, pod, host), channel: { on: 'host.data', pod, host, pods: t.pods, hosts: t.hostsPerPod } },
    ],
  });
  const actor = createActor(hostMachine.provide({ actors: { wire } }), { input: { topology: t, runId, pod, host } });
  let lastPhase = '';
  let lastBeatPhase = '';
  actor.subscribe((s) => {
    if (s.context.phase !== lastPhase) {
      lastPhase = s.context.phase;
      log.debug({ step: s.context.step, attempt: s.context.attempt, phase: lastPhase }, 'phase');
    }
  });
  let pingSub: Subscription | undefined;
  // subscribe to errors before start, so nothing the actor throws goes unhandled
  // heartbeats: alive, and in which phase; they stop when the process stalls or dies, which is how the pod tells
  // (and one at once on entering a computing phase, which may hold the thread up to the phase deadline)
  const heartbeat = heartbeats({ nc, subject: subjects.podReport(runId, pod), me, kind: 'host.heartbeat', everyMs: t.heartbeat.intervalMs, state: () => actor.getSnapshot().context, log });
  actor.subscribe((s) => {
    if ((s.context.phase === 'forward' || s.context.phase === 'update') && s.context.phase !== lastBeatPhase) heartbeat.beat();
    lastBeatPhase = s.context.phase;
  });
  const done = untilStopped(actor, {
    nc,
    log,
    name: 'host',
    cleanup: () => {
      heartbeat.stop();
      pingSub?.unsubscribe();
    },
  });
  actor.start();

  let peersReady = false;
  const peers = [
    ...Array.from({ length: t.hostsPerPod }, (_, k) => k).filter((k) => k !== host).map((k) => ({ name: actorNames.host(pod, k), subject: subjects.hostPing(runId, pod, k) })),
    ...Array.from({ length: t.pods }, (_, q) => q).filter((q) => q !== pod).map((q) => ({ name: actorNames.host(q, host), subject: subjects.hostPing(runId, q, host) })),
  ];
  pingSub = answerPings(nc, subjects.hostPing(runId, pod, host), runId, me, () => ({ ready: peersReady, waitingFor: peersReady ? [] : peers.map((p) => p.name) }), log);
  const ready = waitForPeers(nc, { runId, me, peers, deadlineMs: t.deadlines.startupMs, log }).then(() => {
    peersReady = true;
    log.info({ peers: peers.length }, 'host ready');
  });
  return { ready, done, stop: () => actor.stop() };
}
