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
  type StepDispatch,
  type HostStopped,
  type PhaseTimes,
  type SampleRange,
  type Topology,
} from '@lockstep/topology';
import { envelope as envelopeFor, mergeRejections, rejection, stepMismatch, type Rejections } from '../rejects.ts';
import type { WireCommand, WireEvent } from '../wire/edge.ts';

/**
 * A pod's scheduler: gang-schedules its hosts for each step attempt and speaks
 * for them to the client. The head is the step it commits next.
 *
 *   idle --step.dispatch of the head--> running (every host gets host.dispatch with its samples)
 *   running --all host.prepared--> prepared (pod.prepared: pod hash over shard hashes)
 *   prepared --step.commit--> committing --all host.committed--> advancing (pod.committed):
 *     the step after it, if dispatched already, is the head now -> running (-> prepared, if its hosts
 *     prepared it meanwhile; -> failed, if one failed it); else idle
 *   any attempt state --step.abort--> aborting --all host.aborted--> idle (pod.aborted)
 *   a host's failure, a silent host (no heartbeat for `misses` intervals, longer while it
 *     computes), a host that says it is idle, healing or lost in the attempt, or a missed
 *     deadline --> failed (pod.failed), then the client aborts
 *   any state --run.restore--> restoring (every host loads the checkpoint) --all host.restored-->
 *     idle at the step after it (pod.restored with the parameters' hash)
 *   run.end --> stopping --all host.stopped--> stopped (pod.stopped with every count)
 *
 * Parallel asynchronous dispatch (`dispatch.depth` > 1): a dispatch of a step after the head, in
 * any state but restoring and stopping, is relayed to the hosts at once (they queue it in step
 * order and start it on the head's prepared parameters) and kept in `ahead`, with what its hosts
 * report, until it is the head. An abort of the head takes every step ahead of that attempt or an
 * older one with it (the hosts drop them too); a newer attempt of the head supersedes older ones ahead.
 *
 * A restarted scheduler (`rejoin`) starts at step -1 and takes the step from the client's next
 * dispatch (the step after what it says is committed) or (resent) commit. Throughout: a pod.heartbeat every heartbeat interval (`clock.tick`)
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

/**
 * A step dispatched after the head (the step this pod commits next): relayed to the hosts at once (they compute it on
 * the head's prepared parameters), its reports kept until it is the head.
 */
export interface PodAhead {
  step: number;
  attempt: number;
  samples: SampleRange;
  prepared: Map<number, HostPrepared>;
  dispatchedAt: number;
  /** A host's failure of this step, said to the client once it is the head. */
  failure: { host: number; cause: FailureCause } | undefined;
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
  /** Started again after a crash (`rejoin`): a former life may have reported steps this one never saw. */
  restarted: boolean;
  /** Steps dispatched after the head, in step order (at most `dispatch.depth - 1` in a run without faults). */
  ahead: PodAhead[];
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

/**
 * A host's phase as the pod judges it once the host prepared step `step`: computing again if a later step was
 * dispatched to it (it runs that on its prepared parameters at once), else prepared. A host given a step is judged
 * by the compute silence limit until a heartbeat says otherwise (hosts send none on entering a phase).
 */
function phaseAfterPrepared(ctx: PodContext, step: number): string {
  return ctx.ahead.some((a) => a.step > step) ? 'forward' : 'prepared';
}

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
  // what a host does now, at the head or a step ahead of it (not a report of a step it left)
  if (event.msg.step < ctx.step) return { lastSeen, lost, healing, heard };
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

/** The step a dispatch's head is: the pod's, or (restarted, knowing no step yet) the one after what the client says is committed. */
const headStep = (ctx: PodContext, msg: StepDispatch) => (ctx.step === -1 ? msg.committed + 1 : ctx.step);

/** Whether a dispatch is for the head: a later attempt of the step in flight, or the step the client is at after a restart. */
function isNext(ctx: PodContext, msg: StepDispatch): boolean {
  return msg.step === headStep(ctx, msg) && msg.attempt > ctx.attempt;
}

/**
 * Whether a dispatch is for a step after the head: within `dispatch.depth` steps of it (the client moves on only once
 * every pod committed), newer than any attempt of that step the pod holds, and not older than the head's (the client
 * numbers every dispatch after a retry above everything before it: an older one is a leftover).
 */
function isAhead(ctx: PodContext, msg: StepDispatch): boolean {
  const head = headStep(ctx, msg);
  const held = ctx.ahead.find((a) => a.step === msg.step)?.attempt ?? -1;
  return msg.step > head && msg.step < head + ctx.topology.dispatch.depth && msg.attempt > held && msg.attempt >= ctx.attempt;
}

/** The step attempt an event reports on is one after the head this pod holds. */
const aheadOf = (ctx: PodContext, event: PodEvent) => {
  const s = eventStep(event);
  return s && ctx.ahead.find((a) => a.step === s.step && a.attempt === s.attempt);
};

/** host.dispatch of a step attempt to every host of the pod, each with its share of the pod's samples, in the order the pod takes them. */
function relayDispatch(ctx: PodContext, msg: StepDispatch): WireCommand[] {
  const { step, attempt, samples } = msg;
  // what the hosts build on: a host that holds less than this is behind (it healed from a peer behind its pod)
  const committed = Math.max(ctx.lastCommitted?.step ?? -1, msg.committed);
  return hostList(ctx).map((h) => ({
    type: 'wire.send',
    subject: subjects.hostCmd(ctx.runId, ctx.pod, h),
    message: {
      ...envelope({ ...ctx, step, attempt }, `host.dispatch.${h}`),
      kind: 'host.dispatch',
      samples: hostSamples(samples, ctx.topology.hostsPerPod, h),
      committed,
    },
  }));
}

/** A dispatch wherever the head is not being committed: the head's (a newer attempt starts it over), or a later step's, scheduled behind it. */
const onDispatch = [
  { guard: 'isNewerAttempt', target: '#pod.running', reenter: true, actions: 'dispatchHosts' },
  { guard: 'isAheadDispatch', actions: 'dispatchAhead' },
  { actions: 'reject' },
] as const;
/** host.prepared wherever the head's hosts report: the head's, or a step's ahead of it. */
const onHostPrepared = [
  { guard: 'forThisAttempt', actions: 'storePrepared' },
  { guard: 'forAhead', actions: 'storeAheadPrepared' },
  { actions: 'reject' },
] as const;

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
    /** A dispatch of a step after the head: relayed to the hosts now, its reports kept for when it is the head. */
    isAheadDispatch: ({ context, event }) => event.type === 'step.dispatch' && isAhead(context, event.msg),
    /** A report on a step after the head. */
    forAhead: ({ context, event }) => aheadOf(context, event) !== undefined,
    /** The head committed, and the step after it was dispatched already. */
    nextDispatched: ({ context }) => context.ahead[0]?.step === context.step,
    /** The head failed (a host said so while it was a step ahead). */
    headFailed: ({ context }) => context.failure !== undefined,
    /**
     * Restarted while the client was committing: the client's resent commit is the first it hears of the step (step -1);
     * or, with steps in flight, the commit of the step after the one it learned so, which a former life of this pod
     * prepared and reported (idle: this life was never dispatched it). The client commits only what every pod prepared;
     * a pod that never restarted relays a commit only of what every host prepared for it.
     */
    isCommitAfterRejoin: ({ context, event }) =>
      event.type === 'step.commit' && (context.step === -1 || (context.restarted && event.msg.step === context.step)),
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
    /**
     * Gang-schedule the head: every host of the pod gets the same step attempt, with its share of the pod's samples.
     * Steps ahead of an older attempt were aborted with it (the client retries from here).
     */
    dispatchHosts: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'step.dispatch') return;
      const { step, attempt, samples } = event.msg;
      for (const c of relayDispatch(context, event.msg)) enqueue.sendTo('wire', c);
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
        ahead: context.ahead.filter((a) => a.step > step && a.attempt >= attempt),
      });
    }),
    /** Gang-schedule a step after the head: the hosts queue it behind the head, in step order, and run it on the head's prepared parameters. */
    dispatchAhead: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'step.dispatch') return;
      const { step, attempt, samples } = event.msg;
      for (const c of relayDispatch(context, event.msg)) enqueue.sendTo('wire', c);
      const slot: PodAhead = { step, attempt, samples, prepared: new Map(), dispatchedAt: event.at, failure: undefined };
      // a newer attempt: what the pod held ahead of an older one was aborted
      const ahead = [...context.ahead.filter((a) => a.step !== step && a.attempt >= attempt), slot].sort((a, b) => a.step - b.step);
      // a host that holds nothing more to compute takes this step at once: judged as computing from now on
      const hostPhase = context.hostPhase.map((p) => (p === 'prepared' || p === 'idle' ? 'forward' : p));
      // a restarted pod (step -1) still learns its head from the head's own dispatch, or from the client's resent commit
      enqueue.assign({ ahead, hostPhase, now: Math.max(context.now, event.at) });
    }),
    storeAheadPrepared: assign(({ context, event }) => {
      const slot = aheadOf(context, event);
      if (event.type !== 'host.prepared' || !slot) return {};
      const h = hostIndex(event);
      if (slot.prepared.has(h)) return { duplicates: context.duplicates + 1 };
      const { forward = 0, backward = 0, update = 0 } = event.msg.phaseMs;
      const hostPhase = [...context.hostPhase];
      hostPhase[h] = phaseAfterPrepared(context, slot.step);
      return {
        ahead: context.ahead.map((a) => (a === slot ? { ...a, prepared: new Map(a.prepared).set(h, event.msg) } : a)),
        hostPhase,
        computeMs: Math.max(context.computeMs, forward, backward, update),
      };
    }),
    /** A host failed a step ahead: the pod says so when that step is the head (the head may still commit). */
    storeAheadFailure: assign(({ context, event }) => {
      const slot = aheadOf(context, event);
      if (event.type !== 'host.failed' || !slot || slot.failure) return {};
      return { ahead: context.ahead.map((a) => (a === slot ? { ...a, failure: { host: hostIndex(event), cause: event.msg.cause } } : a)) };
    }),
    /** The step after the committed head was dispatched already: it is the head now, with what its hosts reported so far. */
    promoteAhead: assign(({ context }) => {
      const [a, ...ahead] = context.ahead;
      return {
        ahead,
        step: a.step,
        attempt: a.attempt,
        samples: a.samples,
        prepared: a.prepared,
        committed: new Map(),
        aborted: new Set(),
        failure: a.failure,
        dispatchedAt: a.dispatchedAt,
        // a host that has not prepared the new head computes it (or a step before it): judged as computing
        hostPhase: context.hostPhase.map((p, h) =>
          a.prepared.has(h) ? phaseAfterPrepared({ ...context, ahead }, a.step) : p === 'prepared' || p === 'idle' ? 'forward' : p,
        ),
      };
    }),
    /** An abort of the head takes every step ahead of it of that attempt or an older one (the client dispatches them again). */
    dropAborted: assign(({ context, event }) => {
      const attempt = event.type === 'step.abort' ? event.msg.attempt : context.attempt;
      return { ahead: context.ahead.filter((a) => a.attempt > attempt) };
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
      hostPhase[h] = phaseAfterPrepared(context, context.step);
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
        waitedMs: hosts.reduce((n, p) => n + p.waitedMs, 0) / hosts.length,
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
    /**
     * An abort of an attempt this pod never started (its dispatch was lost) or already ended: tell the hosts, confirm at
     * once, both under the aborted step (a restarted pod, at step -1, confirmed under -1, which the client rejected as
     * stale and waited out `heartbeat.misses` intervals for: 2 minutes on palm-540b).
     */
    confirmAborted: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'step.abort') return;
      const ctx = { ...context, step: event.msg.step, attempt: event.msg.attempt };
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
      event.type === 'run.restore' ? { restoreTo: event.msg.checkpoint, restored: new Map<number, string>(), ahead: [] } : {},
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
    restarted: input.rejoin === true,
    ahead: [],
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
    // reports on a step ahead of the head, whatever the head is doing: kept for when it is the head
    'host.prepared': [{ guard: 'forAhead', actions: 'storeAheadPrepared' }, { actions: 'reject' }],
    'host.failed': [{ guard: 'forAhead', actions: 'storeAheadFailure' }, { actions: 'reject' }],
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
        'step.dispatch': onDispatch,
        'step.commit': [
          { guard: 'isLastCommitted', actions: 'confirmCommitted' },
          { guard: 'isCommitAfterRejoin', target: 'committing', actions: 'adoptCommit' },
          { actions: 'reject' },
        ],
        'step.abort': [{ guard: 'isAbortOfThisStep', actions: ['confirmAborted', 'dropAborted'] }, { actions: 'reject' }],
      },
    },
    running: {
      entry: { type: 'setPhase', params: { phase: 'running' } },
      always: [
        { guard: 'headFailed', target: 'failed' },
        { guard: 'allPrepared', target: 'prepared' },
      ],
      on: {
        'step.dispatch': onDispatch,
        // a host that stops heartbeating while the step runs (crashed, or stalled) fails the attempt, named
        'clock.tick': [
          { guard: 'someHostSilent', target: 'failed', actions: ['noteTime', 'silentFailed', 'sendHeartbeat'] },
          { actions: ['noteTime', 'sendHeartbeat'] },
        ],
        'host.heartbeat': [
          { guard: 'hostIdleInAttempt', target: 'failed', actions: ['noteHeartbeat', 'sayHostHeals', 'idleFailed'] },
          { actions: ['noteHeartbeat', 'sayHostHeals'] },
        ],
        'host.prepared': onHostPrepared,
        'host.failed': [
          { guard: 'forThisAttempt', target: 'failed', actions: 'hostFailed' },
          { guard: 'forAhead', actions: 'storeAheadFailure' },
          { actions: 'reject' },
        ],
        'step.abort': [{ guard: 'forThisAttempt', target: 'aborting' }, { actions: 'reject' }],
      },
      after: { stepDeadline: { target: 'failed', actions: { type: 'deadlineFailed', params: { waitingFor: 'host.prepared' } } } },
    },
    prepared: {
      entry: [{ type: 'setPhase', params: { phase: 'prepared' } }, 'sendPrepared'],
      on: {
        'step.dispatch': onDispatch,
        'host.prepared': onHostPrepared, // a host's repeat of the head: counted as a duplicate
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
      always: { guard: 'allCommitted', target: 'advancing', actions: 'sendCommitted' },
      on: {
        // a step after the head (the head is logged: it is never superseded)
        'step.dispatch': [{ guard: 'isAheadDispatch', actions: 'dispatchAhead' }, { actions: 'reject' }],
        'host.committed': [{ guard: 'forThisAttempt', actions: 'storeCommitted' }, { actions: 'reject' }],
        'host.prepared': onHostPrepared, // a host's repeat of the head: counted as a duplicate
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
    /** The head committed: the step after it, if dispatched already (its hosts are on it), is the head now; else the pod idles. */
    advancing: {
      always: [{ guard: 'nextDispatched', target: 'running', actions: 'promoteAhead' }, { target: 'idle' }],
    },
    aborting: {
      // the hosts drop the head and everything after it of this attempt or an older one
      entry: [{ type: 'setPhase', params: { phase: 'aborting' } }, { type: 'relay', params: { kind: 'host.abort' } }, 'dropAborted'],
      always: { guard: 'allAborted', target: 'idle', actions: 'sendAborted' },
      on: {
        'step.dispatch': onDispatch,
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
        'step.dispatch': onDispatch,
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
