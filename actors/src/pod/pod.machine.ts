import { assign, enqueueActions, fromCallback, sendTo, setup } from 'xstate';
import { longestSilence, timeOf, type ClockTick } from '../clock.ts';
import {
  actorNames,
  combineShardHashes,
  hostPhases,
  isComputePhase,
  hostSamples,
  subjects,
  type ControlMessage,
  type FailureCause,
  type HostPrepared,
  type HostStopped,
  type PhaseTimes,
  type SampleRange,
  type Topology,
} from '@lockstep/topology';
import { envelope as envelopeFor, mergeRejections, rejection, stepMismatch, type Rejections } from '../rejects.ts';
import type { WireCommand, WireEvent } from '../wire/edge.ts';

/**
 * A pod's scheduler: gang-schedules its hosts for each step attempt and speaks
 * for them to the client.
 *
 *   idle --step.dispatch--> running (every host gets host.dispatch with its samples)
 *   running --all host.prepared--> prepared (pod.prepared: pod hash over shard hashes)
 *   prepared --step.commit--> committing --all host.committed--> idle (pod.committed)
 *   any attempt state --step.abort--> aborting --all host.aborted--> idle (pod.aborted)
 *   a host's failure, a silent host (no heartbeat for `misses` intervals, longer while it
 *     computes), a host that says it is idle, healing or lost in the attempt, or a missed
 *     deadline --> failed (pod.failed), then the client aborts
 *   any state --run.restore--> restoring (every host loads the checkpoint) --all host.restored-->
 *     idle at the step after it (pod.restored with the parameters' hash)
 *   run.end --> stopping --all host.stopped--> stopped (pod.stopped with every count)
 *
 * A restarted scheduler (`rejoin`) starts at step -1 and takes the step from the client's next
 * dispatch or (resent) commit. Throughout: a pod.heartbeat every heartbeat interval (`clock.tick`)
 * with its phase and whether every host is up (heard from, lately, not joining, healing or lost): the
 * client starts the run once every pod says so. Reports (pod.prepared) and relays to hosts that have not
 * answered are said again every interval; each heartbeat of a host that says it heals (it restarted) is
 * passed on to host h of every other pod (heal.expect), which holds the replica it heals from and serves
 * it only on that word.
 */
export interface PodInput {
  topology: Topology;
  runId: string;
  pod: number;
  /** Which life of this scheduler (a restart is a new one): part of every message id. */
  incarnation: string;
  /** The time it starts at (ms on the run's clock). */
  now?: number;
  /** A restarted scheduler: it does not know the step until the client next speaks (step -1 until then). */
  rejoin?: boolean;
}

export interface PodContext {
  topology: Topology;
  runId: string;
  pod: number;
  me: string;
  incarnation: string;
  /** The latest time the pod knows of (ms on the run's clock): from the last timed event it took. */
  now: number;
  /** Heartbeats sent (part of their message ids). */
  beats: number;
  step: number;
  attempt: number;
  samples: SampleRange;
  /** Each host's last reported phase (a step phase, idle, prepared, or healing/lost/failed after its heartbeats). */
  hostPhase: string[];
  prepared: Map<number, HostPrepared>;
  /** Hosts that confirmed the commit, with the shard hash each committed. */
  committed: Map<number, string>;
  aborted: Set<number>;
  stopped: Map<number, HostStopped>;
  phase: 'idle' | 'running' | 'prepared' | 'committing' | 'aborting' | 'failed' | 'restoring' | 'stopping' | 'stopped';
  rejected: Rejections;
  duplicates: number;
  /** Faults the seeded fault layer injected into what this actor sent. */
  faultsInjected: number;
  /** Why the attempt failed in this pod: the cause, and the host that reported it (-1: the pod found it). */
  failure: { host: number; cause: FailureCause } | undefined;
  /** The last step this pod committed: a resent commit for it is answered again, not rejected. */
  lastCommitted: { step: number; attempt: number; paramsHash: string } | undefined;
  /** Relays sent so far; part of each relay's message id, so a resend is not taken for a repeat. */
  relays: number;
  /** When each host was last heard from (ms on the run's clock), for silence detection. */
  lastSeen: number[];
  /** The longest compute phase (forward, backward, update) any host has reported. */
  computeMs: number;
  /** When the attempt in flight was dispatched (ms on the run's clock). */
  dispatchedAt: number;
  /** Hosts whose last heartbeat said they are lost (restarted with no replica to heal from). */
  lost: boolean[];
  /** Hosts whose last heartbeat said they are joining or healing (started, reaching their cross-pod peers; or restarted, fetching the committed state from one). */
  healing: boolean[];
  /** Hosts heard from at all in this scheduler's life: until each has been, the pod is not ready. */
  heard: boolean[];
  /** The checkpoint a restore in flight goes back to, and the shard hash each host restored. */
  restoreTo: number;
  restored: Map<number, string>;
}

export type PodEvent = WireEvent | ClockTick;

function envelope(ctx: PodContext, kind: string) {
  return envelopeFor(ctx, ctx.me, kind);
}

function toClient(ctx: PodContext, message: ControlMessage): WireCommand {
  return { type: 'wire.send', subject: subjects.clientReport(ctx.runId, ctx.pod), message };
}

function eventStep(event: PodEvent): { step: number; attempt: number } | undefined {
  return 'msg' in event ? event.msg : undefined;
}

function hostIndex(event: PodEvent): number {
  return 'msg' in event ? Number(event.msg.sender.split('/')[2]) : -1;
}

/**
 * The host silent the longest past its limit, if any: `misses` heartbeat
 * intervals, or, when its last heartbeat said it was computing (a host's
 * compute holds its only thread), that plus four times the longest compute
 * phase seen so far, at most the phase deadline (the whole phase deadline
 * before any step has reported its times).
 */
function silentHost(ctx: PodContext, now: number): { host: number; ms: number } | undefined {
  const beatLimit = ctx.topology.heartbeat.intervalMs * ctx.topology.heartbeat.misses;
  const phaseMs = ctx.topology.deadlines.phaseMs;
  const computeLimit = Math.max(beatLimit, ctx.computeMs === 0 ? phaseMs : Math.min(phaseMs, beatLimit + 4 * ctx.computeMs));
  const s = longestSilence(ctx.lastSeen, now, (host) => (isComputePhase(String(ctx.hostPhase[host])) ? computeLimit : beatLimit));
  return s && { host: s.index, ms: s.ms };
}

const hostList = (ctx: PodContext) => Array.from({ length: ctx.topology.hostsPerPod }, (_, h) => h);

/**
 * Hosts not heard from yet, or not within `misses` heartbeat intervals at `now`, or still joining or healing: a step
 * dispatched now could not run.
 */
export function silentHosts(ctx: Pick<PodContext, 'topology' | 'lastSeen' | 'healing' | 'heard'>, now: number): number[] {
  const limit = ctx.topology.heartbeat.intervalMs * ctx.topology.heartbeat.misses;
  return ctx.lastSeen.flatMap((seen, h) => (!ctx.heard[h] || now - seen > limit || ctx.healing[h] ? [h] : []));
}

/** A host that says it is joining or healing was (re)started: it holds no part of the attempt in flight. */
const isStarting = (phase: string) => phase === 'joining' || phase === 'healing';

/** Every host heard from lately, and none joining, healing or lost: a step dispatched now could run. */
const isReady = (ctx: PodContext, now: number) => silentHosts(ctx, now).length === 0 && lostHosts(ctx).length === 0;

type HostHeartbeatEvent = Extract<PodEvent, { type: 'host.heartbeat' }>;

/** What a host's heartbeat tells the pod: when it was heard, and whether it is joining, healing or lost, and in which phase. */
function heartbeatNoted(ctx: PodContext, event: HostHeartbeatEvent): Partial<PodContext> {
  const h = hostIndex(event);
  const lastSeen = [...ctx.lastSeen];
  lastSeen[h] = event.at;
  const lost = [...ctx.lost];
  lost[h] = event.msg.phase === 'lost';
  const healing = [...ctx.healing];
  healing[h] = isStarting(event.msg.phase);
  const heard = ctx.heard[h] ? ctx.heard : ctx.heard.map((x, k) => x || k === h);
  if (stepMismatch(ctx, event.msg) !== undefined) return { lastSeen, lost, healing, heard };
  const hostPhase = [...ctx.hostPhase];
  hostPhase[h] = event.msg.phase;
  return { lastSeen, hostPhase, lost, healing, heard };
}

/**
 * This heartbeat brings the last host up (heard from, not joining, healing or lost): the pod says it is ready at
 * once, not at its next tick, so the client starts (or retries) without waiting a heartbeat interval.
 */
function makesReady(ctx: PodContext, event: HostHeartbeatEvent): boolean {
  const h = hostIndex(event);
  const limit = ctx.topology.heartbeat.intervalMs * ctx.topology.heartbeat.misses;
  const wasDown = !ctx.heard[h] || ctx.healing[h] || ctx.lost[h] || event.at - ctx.lastSeen[h] > limit;
  const isUp = event.msg.phase !== 'lost' && !isStarting(event.msg.phase);
  return wasDown && isUp && !isReady(ctx, event.at) && isReady({ ...ctx, ...heartbeatNoted(ctx, event) }, event.at);
}

/** Hosts restarted with no replica of their shard left: only a restore brings them back. */
export function lostHosts(ctx: Pick<PodContext, 'lost'>): number[] {
  return ctx.lost.flatMap((l, h) => (l ? [h] : []));
}

/** Whether a dispatch is the next one: a later attempt of the step in flight, or any step after a restart. */
function isNext(ctx: PodContext, msg: { step: number; attempt: number }): boolean {
  return (ctx.step === -1 || msg.step === ctx.step) && msg.attempt > ctx.attempt;
}

export const podMachine = setup({
  types: { context: {} as PodContext, input: {} as PodInput, events: {} as PodEvent },
  actors: {
    wire: fromCallback<WireCommand>(() => {
      throw new Error('podMachine: provide the `wire` actor');
    }),
    /** Sends `clock.tick` every heartbeat interval (see `ticker`); provided by the adapter. */
    clock: fromCallback<{ type: 'noop' }, { everyMs: number }>(() => {
      throw new Error('podMachine: provide the `clock` actor');
    }),
  },
  delays: {
    stepDeadline: ({ context }) => context.topology.deadlines.stepMs,
    phaseDeadline: ({ context }) => context.topology.deadlines.phaseMs,
    resendDelay: ({ context }) => context.topology.heartbeat.intervalMs,
  },
  guards: {
    isNextDispatch: ({ context, event }) => event.type === 'step.dispatch' && isNext(context, event.msg),
    /** Restarted while the client was committing: the client's resent commit is the first it hears of the step. */
    isCommitAfterRejoin: ({ context, event }) => event.type === 'step.commit' && context.step === -1,
    forThisAttempt: ({ context, event }) => {
      const s = eventStep(event);
      return s !== undefined && stepMismatch(context, s) === undefined;
    },
    allPrepared: ({ context }) => context.prepared.size === context.topology.hostsPerPod,
    allCommitted: ({ context }) => context.committed.size === context.topology.hostsPerPod,
    allAborted: ({ context }) => context.aborted.size === context.topology.hostsPerPod,
    allStopped: ({ context }) => context.stopped.size === context.topology.hostsPerPod,
    makesReady: ({ context, event }) => event.type === 'host.heartbeat' && makesReady(context, event),
    someHostSilent: ({ context, event }) => silentHost(context, timeOf(event, context.now)) !== undefined,
    /**
     * A host that says it is idle at this step well after the dispatch never got it, or was restarted
     * (and healed) meanwhile; one that is healing or lost was restarted: either way this attempt cannot finish.
     */
    hostIdleInAttempt: ({ context, event }) =>
      event.type === 'host.heartbeat' &&
      (event.msg.phase === 'lost' ||
        isStarting(event.msg.phase) ||
        (event.msg.phase === 'idle' &&
          event.msg.step === context.step &&
          event.at - context.dispatchedAt > 2 * context.topology.heartbeat.intervalMs)),
    /** A later attempt of the step in flight supersedes the current one. */
    isNewerAttempt: ({ context, event }) => event.type === 'step.dispatch' && isNext(context, event.msg),
    isLastCommitted: ({ context, event }) =>
      event.type === 'step.commit' &&
      context.lastCommitted !== undefined &&
      event.msg.step === context.lastCommitted.step &&
      event.msg.attempt === context.lastCommitted.attempt,
    isAbortOfThisStep: ({ context, event }) =>
      event.type === 'step.abort' && (context.step === -1 || (event.msg.step === context.step && event.msg.attempt >= context.attempt)),
  },
  actions: {
    /** Count a message that does not belong here; the state is left as it was. */
    reject: assign(({ context, event }) => rejection(context, event as never)),
    setPhase: assign((_, params: { phase: PodContext['phase'] }) => ({ phase: params.phase })),
    /** Gang-schedule: every host of the pod gets the same step attempt, with its share of the pod's samples. */
    dispatchHosts: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'step.dispatch') return;
      const { step, attempt, samples } = event.msg;
      enqueue.assign({
        step,
        attempt,
        samples,
        prepared: new Map(),
        committed: new Map(),
        aborted: new Set(),
        failure: undefined,
        // a dispatched host starts computing at once (its heartbeats say more, every interval): its silence is judged as
        // a computing host's from now on, with no heartbeat of its own on entering a phase
        hostPhase: hostList(context).map(() => 'forward' as const),
        lastSeen: hostList(context).map(() => event.at),
        dispatchedAt: event.at,
        now: Math.max(context.now, event.at),
      });
      for (const h of hostList(context)) {
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostCmd(context.runId, context.pod, h),
          message: {
            ...envelope({ ...context, step, attempt }, `host.dispatch.${h}`),
            kind: 'host.dispatch',
            samples: hostSamples(samples, context.topology.hostsPerPod, h),
          },
        });
      }
    }),
    /** Note the time a tick carries (what xstate's own events, which carry none, fall back to). */
    noteTime: assign(({ context, event }) => ({ now: Math.max(context.now, timeOf(event, context.now)) })),
    /** Alive, in which phase, and whether every host is up (heard from lately, not healing, not lost): every heartbeat interval. */
    sendHeartbeat: enqueueActions(({ context, event, enqueue }) => {
      const silent = silentHosts(context, timeOf(event, context.now));
      const lost = lostHosts(context);
      enqueue.sendTo(
        'wire',
        toClient(context, {
          ...envelope(context, `pod.heartbeat.${context.beats}`),
          kind: 'pod.heartbeat',
          phase: context.phase,
          ready: silent.length === 0 && lost.length === 0,
          silentHosts: silent,
          lostHosts: lost,
        }),
      );
      enqueue.assign({ beats: context.beats + 1 });
    }),
    countRelay: assign(({ context }) => ({ relays: context.relays + 1 })),
    /**
     * A host says it heals: tell host h of every other pod, which holds the replica it heals from and serves it
     * only on this word (host/serve.ts). Said on each heartbeat that says so (at once, and every interval), so the
     * word lapses there once the host has healed.
     */
    sayHostHeals: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'host.heartbeat' || event.msg.phase !== 'healing') return;
      const h = hostIndex(event);
      for (let q = 0; q < context.topology.pods; q++) {
        if (q === context.pod) continue;
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostExpect(context.runId, q, h, context.pod),
          message: { ...envelope(context, `heal.expect.${h}.to${q}.r${context.relays}`), kind: 'heal.expect' },
        } satisfies WireCommand);
      }
      enqueue.assign({ relays: context.relays + 1 });
    }),
    noteHeartbeat: assign(({ context, event }) => (event.type === 'host.heartbeat' ? heartbeatNoted(context, event) : {})),
    /** A host restarted (healing, or lost with no replica left) or idle well after the dispatch: it is not in this attempt. */
    idleFailed: assign(({ context, event }) => {
      const actor = actorNames.host(context.pod, hostIndex(event));
      const phase = event.type === 'host.heartbeat' ? event.msg.phase : 'idle';
      const cause: FailureCause =
        phase === 'lost' ? { kind: 'lost', actor, peers: [] } : isStarting(phase) ? { kind: 'healing', actor } : { kind: 'idle', actor };
      return { failure: { host: -1, cause } };
    }),
    silentFailed: assign(({ context, event }) => {
      const s = silentHost(context, timeOf(event, context.now))!;
      return {
        failure: {
          host: -1,
          cause: {
            kind: 'silent' as const,
            actor: actorNames.host(context.pod, s.host),
            ms: s.ms,
            lastPhase: String(context.hostPhase[s.host]),
          },
        },
      };
    }),
    storePrepared: assign(({ context, event }) => {
      if (event.type !== 'host.prepared') return {};
      const h = hostIndex(event);
      if (context.prepared.has(h)) return { duplicates: context.duplicates + 1 };
      const hostPhase = [...context.hostPhase];
      hostPhase[h] = 'prepared';
      const { forward = 0, backward = 0, update = 0 } = event.msg.phaseMs;
      return {
        prepared: new Map(context.prepared).set(h, event.msg),
        hostPhase,
        computeMs: Math.max(context.computeMs, forward, backward, update),
      };
    }),
    storeCommitted: assign(({ context, event }) =>
      event.type === 'host.committed' ? { committed: new Map(context.committed).set(hostIndex(event), event.msg.shardHash) } : {},
    ),
    adoptCommit: assign(({ event }) =>
      event.type === 'step.commit'
        ? { step: event.msg.step, attempt: event.msg.attempt, prepared: new Map(), committed: new Map(), aborted: new Set<number>() }
        : {},
    ),
    storeAborted: assign(({ context, event }) => ({ aborted: new Set(context.aborted).add(hostIndex(event)) })),
    storeStopped: assign(({ context, event }) =>
      event.type === 'host.stopped' ? { stopped: new Map(context.stopped).set(hostIndex(event), event.msg) } : {},
    ),
    hostFailed: assign(({ event }) =>
      event.type === 'host.failed' ? { failure: { host: hostIndex(event), cause: event.msg.cause } } : {},
    ),
    /** The step deadline passed waiting for hosts to prepare (a deadline) or to confirm the commit (a commit is never taken back). */
    /**
     * A deadline passed waiting for `waitingFor`: from the hosts that have not answered (the client, for step.commit).
     * Hosts that never confirmed a commit are `commitNotConfirmed`; everything else a `deadline` of the phase the pod is in.
     */
    deadlineFailed: assign(
      ({ context }, params: { waitingFor: 'host.prepared' | 'host.committed' | 'host.aborted' | 'host.restored' | 'step.commit' }) => {
        const answered = {
          'host.prepared': context.prepared,
          'host.committed': context.committed,
          'host.aborted': context.aborted,
          'host.restored': context.restored,
          'step.commit': undefined,
        }[params.waitingFor];
        const peers = answered
          ? hostList(context)
              .filter((h) => !answered.has(h))
              .map((h) => ({ actor: actorNames.host(context.pod, h), lastPhase: String(context.hostPhase[h]) }))
          : [{ actor: actorNames.client }];
        const { stepMs, phaseMs } = context.topology.deadlines;
        const ms = params.waitingFor === 'host.aborted' ? phaseMs : stepMs;
        const cause: FailureCause =
          params.waitingFor === 'host.committed'
            ? { kind: 'commitNotConfirmed', actor: context.me, ms, peers }
            : { kind: 'deadline', actor: context.me, phase: context.phase, ms, waitingFor: params.waitingFor, peers };
        return { failure: { host: -1, cause } };
      },
    ),
    sendPrepared: sendTo('wire', ({ context }) => {
      const hosts = hostList(context).map((h) => context.prepared.get(h)!);
      const shardHashes = hosts.map((p) => p.shardHash);
      let lossSum = 0;
      for (const p of hosts) lossSum += p.lossSum;
      const phaseMs: PhaseTimes = {};
      for (const phase of hostPhases) phaseMs[phase] = Math.max(0, ...hosts.map((p) => p.phaseMs[phase] ?? 0));
      return toClient(context, {
        ...envelope(context, `pod.prepared.r${context.relays}`),
        kind: 'pod.prepared',
        paramsHash: combineShardHashes(shardHashes),
        shardHashes,
        lossSum,
        phaseMs,
      });
    }),
    relay: enqueueActions(
      ({ context, enqueue }, params: { kind: 'host.commit' | 'host.abort' | 'run.end'; reason?: string; missingOnly?: boolean }) => {
        const answered = params.kind === 'host.commit' ? context.committed : context.aborted;
        for (const h of hostList(context)) {
          if (params.missingOnly && answered.has(h)) continue;
          const base = { ...envelope(context, `${params.kind}.${h}.r${context.relays}`) };
          const message: ControlMessage =
            params.kind === 'host.abort'
              ? { ...base, kind: 'host.abort', reason: params.reason ?? 'aborted by the client' }
              : { ...base, kind: params.kind };
          enqueue.sendTo('wire', { type: 'wire.send', subject: subjects.hostCmd(context.runId, context.pod, h), message });
        }
        enqueue.assign({ relays: context.relays + 1 });
      },
    ),
    /** A resent commit for the step already committed: confirm it again. */
    confirmCommitted: enqueueActions(({ context, enqueue }) => {
      const last = context.lastCommitted!;
      const ctx = { ...context, step: last.step, attempt: last.attempt };
      enqueue.sendTo(
        'wire',
        toClient(ctx, { ...envelope(ctx, `pod.committed.r${context.relays}`), kind: 'pod.committed', paramsHash: last.paramsHash }),
      );
      enqueue.assign({ relays: context.relays + 1 }); // each confirmation under a new id
    }),
    /** An abort of an attempt this pod never started (its dispatch was lost) or already ended: tell the hosts, confirm at once. */
    confirmAborted: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'step.abort') return;
      const ctx = { ...context, attempt: event.msg.attempt };
      for (const h of hostList(context)) {
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostCmd(context.runId, context.pod, h),
          message: { ...envelope(ctx, `host.abort.${h}.r${context.relays}`), kind: 'host.abort', reason: event.msg.reason },
        });
      }
      enqueue.sendTo('wire', toClient(ctx, { ...envelope(ctx, `pod.aborted.r${context.relays}`), kind: 'pod.aborted' }));
      enqueue.assign({ attempt: event.msg.attempt, relays: context.relays + 1 });
    }),
    sendCommitted: enqueueActions(({ context, enqueue }) => {
      const paramsHash = combineShardHashes(hostList(context).map((h) => context.committed.get(h)!));
      enqueue.sendTo('wire', toClient(context, { ...envelope(context, 'pod.committed'), kind: 'pod.committed', paramsHash }));
      enqueue.assign({ step: context.step + 1, attempt: -1, lastCommitted: { step: context.step, attempt: context.attempt, paramsHash } });
    }),
    beginRestore: assign(({ event }) =>
      event.type === 'run.restore' ? { restoreTo: event.msg.checkpoint, restored: new Map<number, string>() } : {},
    ),
    /** Tell every host (or those that have not confirmed) to load the checkpoint. */
    relayRestore: enqueueActions(({ context, enqueue }, params: { missingOnly: boolean }) => {
      for (const h of hostList(context)) {
        if (params.missingOnly && context.restored.has(h)) continue;
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.hostCmd(context.runId, context.pod, h),
          message: {
            ...envelope(context, `host.restore.${h}.${context.restoreTo}.r${context.relays}`),
            kind: 'host.restore',
            checkpoint: context.restoreTo,
          },
        });
      }
      enqueue.assign({ relays: context.relays + 1 });
    }),
    storeRestored: assign(({ context, event }) =>
      event.type === 'host.restored' && event.msg.checkpoint === context.restoreTo
        ? { restored: new Map(context.restored).set(hostIndex(event), event.msg.shardHash) }
        : {},
    ),
    /** Every host is back at the checkpoint: the pod is at the step after it, and says so with the parameters' hash. */
    sendRestored: enqueueActions(({ context, enqueue }) => {
      const paramsHash = combineShardHashes(hostList(context).map((h) => context.restored.get(h)!));
      const step = context.restoreTo + 1;
      enqueue.sendTo(
        'wire',
        toClient(context, {
          ...envelope(context, `pod.restored.${context.restoreTo}.r${context.relays}`),
          kind: 'pod.restored',
          checkpoint: context.restoreTo,
          paramsHash,
        }),
      );
      enqueue.assign({
        step,
        attempt: -1,
        lastCommitted: context.restoreTo >= 0 ? { step: context.restoreTo, attempt: 0, paramsHash } : undefined,
        relays: context.relays + 1,
        failure: undefined,
        lost: hostList(context).map(() => false),
        healing: hostList(context).map(() => false),
      });
    }),
    sendAborted: sendTo('wire', ({ context }) => toClient(context, { ...envelope(context, 'pod.aborted'), kind: 'pod.aborted' })),
    sendFailed: sendTo('wire', ({ context }) =>
      toClient(context, {
        ...envelope(context, 'pod.failed'),
        kind: 'pod.failed',
        host: context.failure!.host,
        cause: context.failure!.cause,
      }),
    ),
    sendStopped: sendTo('wire', ({ context }) => {
      const hosts = [...context.stopped.values()];
      return toClient(context, {
        ...envelope(context, 'pod.stopped'),
        kind: 'pod.stopped',
        rejected: mergeRejections(context.rejected, ...hosts.map((h) => h.rejected)),
        duplicates: hosts.reduce((n, h) => n + h.duplicates, context.duplicates),
        faultsInjected: hosts.reduce((n, h) => n + h.faultsInjected, context.faultsInjected),
      });
    }),
  },
}).createMachine({
  id: 'pod',
  context: ({ input }) => ({
    topology: input.topology,
    runId: input.runId,
    pod: input.pod,
    me: actorNames.pod(input.pod),
    incarnation: input.incarnation,
    now: input.now ?? 0,
    beats: 0,
    step: input.rejoin ? -1 : 0,
    attempt: -1,
    samples: { start: 0, end: 0 },
    hostPhase: Array.from({ length: input.topology.hostsPerPod }, () => 'idle' as const),
    prepared: new Map(),
    committed: new Map(),
    aborted: new Set(),
    stopped: new Map(),
    phase: 'idle',
    rejected: {},
    duplicates: 0,
    faultsInjected: 0,
    failure: undefined,
    lastCommitted: undefined,
    relays: 0,
    lastSeen: Array.from({ length: input.topology.hostsPerPod }, () => input.now ?? 0),
    computeMs: 0,
    dispatchedAt: 0,
    lost: Array.from({ length: input.topology.hostsPerPod }, () => false),
    healing: Array.from({ length: input.topology.hostsPerPod }, () => false),
    heard: Array.from({ length: input.topology.hostsPerPod }, () => false),
    restoreTo: -1,
    restored: new Map(),
  }),
  invoke: [
    { id: 'wire', src: 'wire' },
    { id: 'clock', src: 'clock', input: ({ context }) => ({ everyMs: context.topology.heartbeat.intervalMs }) },
  ],
  initial: 'idle',
  on: {
    'run.end': '.stopping',
    // every replica of a shard is gone: the client rolls the whole run back to a checkpoint
    'run.restore': { target: '.restoring', actions: 'beginRestore' },
    'host.heartbeat': [
      { guard: 'makesReady', actions: ['noteHeartbeat', 'sayHostHeals', 'sendHeartbeat'] },
      { actions: ['noteHeartbeat', 'sayHostHeals'] },
    ],
    // a restarted client finishing the commit it logged last: the step is committed here already, confirm it again
    'step.commit': [{ guard: 'isLastCommitted', actions: 'confirmCommitted' }, { actions: 'reject' }],
    'clock.tick': { actions: ['noteTime', 'sendHeartbeat'] },
    'wire.faultInjected': { actions: assign({ faultsInjected: ({ context, event }) => context.faultsInjected + event.count }) },
    '*': { actions: 'reject' },
  },
  states: {
    idle: {
      entry: { type: 'setPhase', params: { phase: 'idle' } },
      on: {
        'step.dispatch': [{ guard: 'isNextDispatch', target: 'running', actions: 'dispatchHosts' }, { actions: 'reject' }],
        'step.commit': [
          { guard: 'isLastCommitted', actions: 'confirmCommitted' },
          { guard: 'isCommitAfterRejoin', target: 'committing', actions: 'adoptCommit' },
          { actions: 'reject' },
        ],
        'step.abort': [{ guard: 'isAbortOfThisStep', actions: 'confirmAborted' }, { actions: 'reject' }],
      },
    },
    running: {
      entry: { type: 'setPhase', params: { phase: 'running' } },
      always: { guard: 'allPrepared', target: 'prepared' },
      on: {
        'step.dispatch': [{ guard: 'isNewerAttempt', target: 'running', reenter: true, actions: 'dispatchHosts' }, { actions: 'reject' }],
        // a host that stops heartbeating while the step runs (crashed, or stalled) fails the attempt, named
        'clock.tick': [
          { guard: 'someHostSilent', target: 'failed', actions: ['noteTime', 'silentFailed', 'sendHeartbeat'] },
          { actions: ['noteTime', 'sendHeartbeat'] },
        ],
        'host.heartbeat': [
          { guard: 'hostIdleInAttempt', target: 'failed', actions: ['noteHeartbeat', 'sayHostHeals', 'idleFailed'] },
          { actions: ['noteHeartbeat', 'sayHostHeals'] },
        ],
        'host.prepared': [{ guard: 'forThisAttempt', actions: 'storePrepared' }, { actions: 'reject' }],
        'host.failed': [{ guard: 'forThisAttempt', target: 'failed', actions: 'hostFailed' }, { actions: 'reject' }],
        'step.abort': [{ guard: 'forThisAttempt', target: 'aborting' }, { actions: 'reject' }],
      },
      after: { stepDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'host.prepared' } } } },
    },
    prepared: {
      entry: [{ type: 'setPhase', params: { phase: 'prepared' } }, 'sendPrepared'],
      on: {
        'step.dispatch': [{ guard: 'isNewerAttempt', target: 'running', reenter: true, actions: 'dispatchHosts' }, { actions: 'reject' }],
        'host.prepared': [{ guard: 'forThisAttempt', actions: 'storePrepared' }, { actions: 'reject' }], // a host's repeat: counted as a duplicate
        'step.commit': [
          { guard: 'forThisAttempt', target: 'committing' },
          { guard: 'isLastCommitted', actions: 'confirmCommitted' },
          { actions: 'reject' },
        ],
        'step.abort': [{ guard: 'forThisAttempt', target: 'aborting' }, { actions: 'reject' }],
      },
      after: {
        stepDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'step.commit' } } },
      },
      // a lost report would stall the step: say it again every heartbeat interval until the client answers
      initial: 'reported',
      states: { reported: { after: { resendDelay: { target: 'reported', reenter: true, actions: ['countRelay', 'sendPrepared'] } } } },
    },
    committing: {
      entry: [
        { type: 'setPhase', params: { phase: 'committing' } },
        { type: 'relay', params: { kind: 'host.commit' } },
      ],
      always: { guard: 'allCommitted', target: 'idle', actions: 'sendCommitted' },
      on: {
        'host.committed': [{ guard: 'forThisAttempt', actions: 'storeCommitted' }, { actions: 'reject' }],
        'host.prepared': [{ guard: 'forThisAttempt', actions: 'storePrepared' }, { actions: 'reject' }], // a host's repeat: counted as a duplicate
        // the client resends a commit it has no answer to: relay it again (hosts that committed confirm again)
        'step.commit': [
          { guard: 'forThisAttempt', actions: { type: 'relay', params: { kind: 'host.commit' } } },
          { guard: 'isLastCommitted', actions: 'confirmCommitted' },
          { actions: 'reject' },
        ],
      },
      after: { stepDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'host.committed' } } } },
      // a lost commit (or a host restarted meanwhile, which confirms once healed): say it again to hosts that have not confirmed
      initial: 'relayed',
      states: {
        relayed: {
          after: {
            resendDelay: {
              target: 'relayed',
              reenter: true,
              actions: { type: 'relay', params: { kind: 'host.commit', missingOnly: true } },
            },
          },
        },
      },
    },
    aborting: {
      entry: [
        { type: 'setPhase', params: { phase: 'aborting' } },
        { type: 'relay', params: { kind: 'host.abort' } },
      ],
      always: { guard: 'allAborted', target: 'idle', actions: 'sendAborted' },
      on: {
        'step.dispatch': [{ guard: 'isNewerAttempt', target: 'running', reenter: true, actions: 'dispatchHosts' }, { actions: 'reject' }],
        'host.aborted': [{ guard: 'forThisAttempt', actions: 'storeAborted' }, { actions: 'reject' }],
      },
      after: {
        phaseDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'host.aborted' } } },
      },
      // a lost abort, or a host restarted meanwhile (it confirms once healed): say it again to hosts that have not confirmed
      initial: 'relayed',
      states: {
        relayed: {
          after: {
            resendDelay: {
              target: 'relayed',
              reenter: true,
              actions: { type: 'relay', params: { kind: 'host.abort', missingOnly: true } },
            },
          },
        },
      },
    },
    failed: {
      entry: [{ type: 'setPhase', params: { phase: 'failed' } }, 'sendFailed'],
      on: {
        'step.dispatch': [{ guard: 'isNewerAttempt', target: 'running', reenter: true, actions: 'dispatchHosts' }, { actions: 'reject' }],
        'step.abort': [{ guard: 'forThisAttempt', target: 'aborting' }, { actions: 'reject' }],
      },
    },
    /** Every host loads the checkpoint (or the initial state); then the pod is idle at the step after it. */
    restoring: {
      entry: [
        { type: 'setPhase', params: { phase: 'restoring' } },
        { type: 'relayRestore', params: { missingOnly: false } },
      ],
      always: { guard: ({ context }) => context.restored.size === context.topology.hostsPerPod, target: 'idle', actions: 'sendRestored' },
      on: {
        'host.restored': { actions: 'storeRestored' },
        // the client's resend of the same restore: nothing new to start
        'run.restore': [
          { guard: ({ context, event }) => event.msg.checkpoint === context.restoreTo },
          { target: 'restoring', reenter: true, actions: 'beginRestore' },
        ],
      },
      after: {
        stepDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'host.restored' } } },
      },
      initial: 'relayed',
      states: {
        relayed: {
          after: { resendDelay: { target: 'relayed', reenter: true, actions: { type: 'relayRestore', params: { missingOnly: true } } } },
        },
      },
    },
    stopping: {
      entry: [
        { type: 'setPhase', params: { phase: 'stopping' } },
        { type: 'relay', params: { kind: 'run.end' } },
      ],
      always: { guard: 'allStopped', target: 'stopped' },
      on: { 'host.stopped': { actions: 'storeStopped' }, 'run.end': { actions: 'reject' } },
      after: { phaseDeadline: 'stopped' },
    },
    /** Reports every count it has; the adapter flushes and exits. */
    stopped: {
      entry: [{ type: 'setPhase', params: { phase: 'stopped' } }, 'sendStopped'],
      on: { 'run.end': { actions: 'reject' }, 'clock.tick': {} },
    },
  },
});
