import type { Subscription } from '@nats-io/transport-node';
import { createActor, fromPromise, waitFor, type ActorRefFrom } from 'xstate';
import { loadCheckpoint, writeShardCheckpoint } from '../checkpoint/store.ts';
import { actorNames, shardRange, parameterCount, subjects, type CrashPoint, type TensorKind } from '@lockstep/topology';
import { crashInspector } from './crash.ts';
import { HealInterrupted } from '../errors.ts';
import { heartbeats, untilStopped } from '../lifecycle.ts';
import { answerPings, waitForPeers } from '../readiness.ts';
import { edgeFor } from '../wire/edge.ts';
import type { HostAddress } from './address.ts';
import { fetchState, serveState, type CommittedState } from './heal.ts';
import { hostMachine } from './host.machine.ts';

/** Into a computing phase (forward, update) and out of one (reduceScatter after backward, allGather after update). */
const BEAT_ON_ENTRY: ReadonlySet<string> = new Set(['forward', 'reduceScatter', 'update', 'allGather']);

export interface HostRun {
  /** Resolves when the host holds its state (healed, if restarted) and every peer (in-pod and cross-pod) answers. */
  ready: Promise<void>;
  /** Resolves after run.end, once the final counts are flushed to the pod. */
  done: Promise<void>;
  stop(): void;
}

export interface HostRunOptions extends HostAddress {
  /** A restarted host: heal the committed state from host h of another pod before taking part. */
  heal?: boolean;
  /** Scenario fault injection: signal this process at an exact point of the protocol. */
  crashPoint?: CrashPoint;
  /** Where checkpoints are written and read (shared by every host and the client). */
  checkpointDir: string;
}

/** Connect one host machine to NATS: its edge, its ping answers, its state service, its start-up handshake. */
export function runHost(opts: HostRunOptions): HostRun {
  const { nc, topology: t, runId, pod, host } = opts;
  const me = actorNames.host(pod, host);
  const log = opts.log.child({ actor: me });
  let actor: ActorRefFrom<typeof hostMachine> | undefined;
  let stopped = false;
  const subs: Subscription[] = [];

  // answers peers that heal from this host; while this host heals itself it has nothing to give
  subs.push(
    serveState({
      nc,
      topology: t,
      runId,
      pod,
      host,
      log,
      state: async () => {
        if (!actor) return 'healing itself (restarted, no state yet)';
        const phase = actor.getSnapshot().context.phase;
        if (phase === 'lost' || phase === 'restoring') return `${phase} (no replica was left to heal from)`;
        // awaiting a commit or abort, the committed state is about to change: answer once it is settled
        const s = await waitFor(actor, (x) => x.context.phase !== 'prepared' || x.status !== 'active', { timeout: t.deadlines.stepMs });
        const c = s.context;
        return { step: c.step, params: c.params, optState: c.optState, lastCommitted: c.lastCommitted } satisfies CommittedState;
      },
    }),
  );

  const start = async (): Promise<{ done: Promise<void> }> => {
    let restored: CommittedState | undefined;
    let lost = false;
    if (opts.heal) {
      const began = performance.now();
      const r = await fetchState({ nc, topology: t, runId, pod, host, log, deadlineMs: t.deadlines.startupMs });
      if (r.ok) {
        restored = r.state;
        log.info(
          { from: r.from, step: r.state.step, lastCommitted: r.state.lastCommitted, ms: Math.round(performance.now() - began) },
          'healed from cross-pod peer',
        );
      } else {
        // every replica of this shard is gone: say so (heartbeat phase 'lost') and wait for the client to restore a checkpoint
        lost = true;
        log.warn({ reason: r.reason }, 'cannot heal: waiting for a checkpoint restore');
      }
    }
    if (stopped) throw new HealInterrupted(`${me} stopped while healing`);
    const done = runMachine(restored, lost);
    return { done };
  };

  const runMachine = (restored: CommittedState | undefined, lost: boolean): Promise<void> => {
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
    const load = fromPromise<CommittedState, { checkpoint: number }>(async ({ input }) => {
      const s = loadCheckpoint(opts.checkpointDir, t, runId, host, input.checkpoint);
      log.info({ checkpoint: input.checkpoint, step: s.step }, 'restored from checkpoint');
      return s;
    });
    const inspect = opts.crashPoint?.host === host ? crashInspector(opts.crashPoint, log) : undefined;
    const a = createActor(hostMachine.provide({ actors: { wire, loadCheckpoint: load } }), {
      input: { topology: t, runId, pod, host, restored, lost },
      inspect,
    });
    // after committing every `everySteps`-th step, write this host's part of the checkpoint (its shard and optimizer state)
    let written = -1;
    a.subscribe((s) => {
      const c = s.context.lastCommitted;
      if (!c || c.step === written || (c.step + 1) % t.checkpoint.everySteps !== 0 || s.context.phase === 'restoring') return;
      written = c.step;
      const own = s.context.ranges[host];
      try {
        writeShardCheckpoint(opts.checkpointDir, {
          runId,
          step: c.step,
          pod,
          host,
          shard: s.context.params.subarray(own.start, own.end),
          opt: s.context.optState,
        });
      } catch (err) {
        log.error({ err, step: c.step }, 'checkpoint not written');
      }
    });
    actor = a;
    let lastPhase = '';
    let lastBeatPhase = '';
    a.subscribe((s) => {
      if (s.context.phase !== lastPhase) {
        lastPhase = s.context.phase;
        log.debug({ step: s.context.step, attempt: s.context.attempt, phase: lastPhase }, 'phase');
      }
    });
    // heartbeats: alive, and in which phase; they stop when the process stalls or dies, which is how the pod tells.
    // One goes at once on entering a computing phase (it may hold the thread up to the phase deadline, and the pod
    // allows that long) and one on leaving it, so a host that dies after computing is missed within `misses` beats.
    const heartbeat = heartbeats({
      nc,
      subject: subjects.podReport(runId, pod),
      me,
      kind: 'host.heartbeat',
      everyMs: t.heartbeat.intervalMs,
      state: () => a.getSnapshot().context,
      log,
    });
    a.subscribe((s) => {
      if (BEAT_ON_ENTRY.has(s.context.phase) && s.context.phase !== lastBeatPhase) heartbeat.beat();
      lastBeatPhase = s.context.phase;
    });
    // subscribe to errors before start, so nothing the actor throws goes unhandled
    const done = untilStopped(a, { nc, log, name: 'host', cleanup: () => heartbeat.stop() });
    a.start();
    heartbeat.beat();
    return done;
  };

  let peersReady = false;
  const peers = [
    ...Array.from({ length: t.hostsPerPod }, (_, k) => k)
      .filter((k) => k !== host)
      .map((k) => ({ name: actorNames.host(pod, k), subject: subjects.hostPing(runId, pod, k) })),
    ...Array.from({ length: t.pods }, (_, q) => q)
      .filter((q) => q !== pod)
      .map((q) => ({ name: actorNames.host(q, host), subject: subjects.hostPing(runId, q, host) })),
  ];
  subs.push(
    answerPings(
      nc,
      subjects.hostPing(runId, pod, host),
      runId,
      me,
      () => ({ ready: peersReady && actor !== undefined, waitingFor: peersReady ? [] : peers.map((p) => p.name) }),
      log,
    ),
  );
  const started = start();
  const ready = Promise.all([started, waitForPeers(nc, { runId, me, peers, deadlineMs: t.deadlines.startupMs, log })]).then(() => {
    peersReady = true;
    log.info({ peers: peers.length }, 'host ready');
  });
  const done = started
    .then((s) => s.done)
    .finally(() => {
      for (const s of subs) s.unsubscribe();
    });
  return {
    ready,
    done,
    stop: () => {
      stopped = true;
      actor?.stop();
    },
  };
}
