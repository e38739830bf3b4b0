import { and, assertEvent, assign, enqueueActions, fromCallback, sendTo, setup } from 'xstate';
import { longestSilence, timeOf, type ClockTick } from '../clock.ts';
import {
  actorNames,
  describeFailure,
  podSamples,
  subjects,
  type CheckpointManifest,
  type FailureCause,
  type PhaseTimes,
  type PodCommitted,
  type PodPrepared,
  type PodStopped,
  type RunFailure,
  type RunLogRecord,
  type Topology,
} from '@lockstep/topology';
import { envelope as envelopeFor, mergeRejections, rejection, stepMismatch, type Rejections } from '../rejects.ts';
import type { WireCommand, WireEvent } from '../wire/edge.ts';

/**
 * The single controller. For each step s from `firstStep` (the head: the step it commits next):
 *
 *   awaitPrepared: step.dispatch (s, attempt) to every pod with its half (1/P)
 *     of the global batch (unless it went already as a step ahead), and every step after it
 *     up to `dispatch.depth` steps in flight (parallel asynchronous dispatch: the batch of a
 *     step depends only on its number); wait for every pod.prepared of s
 *   -> all pods' parameter hashes equal: committing (step.commit to every pod,
 *      wait for every pod.committed), then the next step or finishing
 *   -> hashes differ, a pod failed (now, or while s was a step ahead), or a deadline passed:
 *      aborting (step.abort, which takes every later step in flight with it; wait for every
 *      pod.aborted), then retry or end
 *   logging (between prepared and committing): the decision goes to the durable run log first
 *   aborting -> retryOrEnd: a retryable failure waits (awaitPods) until every pod says, in a
 *     heartbeat heard since, that all its hosts are up, then dispatches attempt a+1 (and the steps
 *     after it again, under that attempt: every dispatch after a retry is newer than all before)
 *   awaitPods or committing, when a pod says a host is lost (no replica of its shard left):
 *     findingCheckpoint -> restoring (run.restore to every pod) -> awaitPods, then the steps since
 *     the checkpoint are replayed, each to its logged hash
 *   finishing: run.end to every pod, wait for their final counts -> done
 *
 * Steps ahead of the head (`ahead`): the pods' reports on them are kept until each is the head;
 * commits stay in step order, so nothing is committed that builds on a step that later aborts.
 *
 * Start (joining): every pod says in a heartbeat that all its hosts are up, within the start-up
 * deadline (else podsNotReady). Then (start) a fresh client dispatches `firstStep`; a restarted one (`resume`, the run log's last
 * record) first finishes that commit (pods that committed it confirm again); after `train --resume`
 * (`cold`) it restores the newest checkpoint and replays up to the logged step. Throughout: a pod
 * silent for `misses` heartbeat intervals fails the attempt (`clock.tick` carries the time); commits
 * are resent every interval until confirmed, never taken back.
 *
 * A step is committed only once every pod has prepared it with the same hash,
 * so the pods hold bitwise-identical parameters at every committed step.
 */
export interface ClientInput {
  topology: Topology;
  runId: string;
  /** Which life of the client (a restart is a new one): part of every message id. */
  incarnation: string;
  /** The time it starts at (ms on the run's clock). */
  now?: number;
  /** Steps to run in all; the run ends after step `steps - 1`. */
  steps: number;
  firstStep?: number;
  /**
   * A restarted client: the run log's last record. That step's commit is
   * finished first (pods that already committed it confirm again), then the
   * run goes on from the next step.
   */
  resume?: RunLogRecord;
  /**
   * With `resume`: the whole cluster was started again (`train --resume`), so no host holds
   * the logged state; restore the newest checkpoint and replay up to the last logged step.
   */
  cold?: boolean;
}

/** Why the client ended or retried an attempt: the step attempt, the pod (and host) that reported it, and the typed cause. */
export type ClientFailure = RunFailure;

export interface StepRecord {
  type: 'step.committed';
  step: number;
  attempt: number;
  loss: number;
  paramsHash: string;
  podHashes: string[];
  podsAgree: boolean;
  phaseMs: PhaseTimes;
  ms: number;
  /**
   * A logged step whose commit was finished late: by a restarted client from the run log, or after a restore that cut
   * its commit short (its predecessor, or this client before the restore, may have reported it already).
   */
  recovered?: boolean;
  /** Run again after a checkpoint restore; committed before (the run log holds its record, with the same hash). */
  replayed?: boolean;
  /** Each shard's hash (what a checkpoint manifest records). */
  shardHashes: string[];
  /** How long the hosts waited for this step's dispatch after the step before was prepared (mean over hosts and pods), ms. */
  waitedMs: number;
}

/** A step dispatched after the head (parallel asynchronous dispatch): the pods' reports on it, kept until it is the head. */
export interface ClientAhead {
  step: number;
  attempt: number;
  dispatchedAt: number;
  prepared: Map<number, PodPrepared>;
  /** A pod's failure of this step: the attempt is aborted (with every later one) once it is the head. */
  failure: ClientFailure | undefined;
}

/** A rollback to a checkpoint because every replica of a shard was gone. */
export interface RestoreRecord {
  /** The step the run was at, and the checkpoint it went back to (-1: the initial parameters). */
  atStep: number;
  checkpoint: number;
  /** Newer checkpoints that did not check out, and why. */
  skipped: { step: number; reason: string }[];
}

export interface ClientContext {
  topology: Topology;
  runId: string;
  incarnation: string;
  /** The latest time the client knows of (ms on the run's clock): from the last timed event it took. */
  now: number;
  steps: number;
  step: number;
  attempt: number;
  stepStartedAt: number;
  prepared: Map<number, PodPrepared>;
  committed: Map<number, PodCommitted>;
  aborted: Set<number>;
  stopped: Map<number, PodStopped>;
  phase:
    | 'joining'
    | 'readingLog'
    | 'awaitPods'
    | 'findingCheckpoint'
    | 'restoring'
    | 'awaitPrepared'
    | 'logging'
    | 'committing'
    | 'aborting'
    | 'finishing'
    | 'done';
  stepsCommitted: number;
  lossFirst: number | undefined;
  lossLast: number | undefined;
  paramsHash: string | undefined;
  podHashes: string[];
  rejected: Rejections;
  duplicates: number;
  /** Faults the seeded fault layer injected into what this actor sent. */
  faultsInjected: number;
  failure: ClientFailure | undefined;
  /** Times the commit or abort of the attempt in flight was resent. */
  resends: number;
  /** When each pod was last heard from (ms on the run's clock) and its last reported phase. */
  podSeen: number[];
  podPhase: string[];
  /** Each pod's last word on whether all its hosts are up, and the step attempt it was at. */
  podReady: boolean[];
  podSilentHosts: number[][];
  podAt: { step: number; attempt: number }[];
  /** Pods heard from since the client began waiting for every pod to be ready again (after a failed attempt). */
  heardSinceWait: boolean[];
  /** Attempts of the step in flight run by this client. */
  tries: number;
  /** When the attempt in flight was dispatched (ms on the run's clock). */
  dispatchedAt: number;
  /** The run log record being finished after a restart. */
  resumed: RunLogRecord | undefined;
  /** Pods' last word on their hosts with no replica left. */
  podLost: number[][];
  /** A restore in flight: the checkpoint, the hash its manifest promises, pods that confirmed. */
  restore: { checkpoint: number; paramsHash: string | null; skipped: { step: number; reason: string }[]; atStep: number } | undefined;
  restoredPods: Set<number>;
  restores: RestoreRecord[];
  /** Steps up to here were committed before the last restore: running them again is a replay. */
  replayUntil: number;
  /**
   * A logged step whose commit a restore cut short (`passLoggedStep`): committed, but perhaps never reported as such;
   * its replay is reported as a finished commit (`recovered`), not as a replay.
   */
  loggedUnconfirmed: number | undefined;
  /**
   * Attempts of a step are numbered from here: after a restore it is above every attempt used so
   * far, so a replayed step's messages never carry the ids of the first run's (and are not dropped as repeats).
   */
  attemptFloor: number;
  maxAttempt: number;
  /** Attempts that failed and were retried. */
  retried: RetriedAttempt[];
  /** Steps dispatched after `step`, in step order: up to `dispatch.depth` steps are in flight, the head included. */
  ahead: ClientAhead[];
}

/** An attempt that failed and was retried: why. */
export type RetriedAttempt = ClientFailure;

export interface ClientOutput {
  stepsCommitted: number;
  lastStep: number;
  loss: { first: number | undefined; last: number | undefined };
  paramsHash: string | undefined;
  pods: { id: string; paramsHash: string }[];
  /** Rejections and duplicates seen by the client, every pod and every host that reported. */
  rejected: Rejections;
  duplicates: number;
  faultsInjected: number;
  podsReported: number;
  failure: ClientFailure | undefined;
  retried: RetriedAttempt[];
  restores: RestoreRecord[];
}

/** What the client asks of its checkpoint store, and what it answers. */
export type CheckpointCommand =
  | { type: 'ckpt.find'; atMost: number }
  /** Every `checkpoint.everySteps`-th committed step: its manifest (the adapter stamps when it was written). */
  | { type: 'ckpt.writeManifest'; manifest: Omit<CheckpointManifest, 'writtenAt'> };
export type CheckpointEvent =
  | { type: 'ckpt.found'; step: number; paramsHash: string; skipped: { step: number; reason: string }[] }
  | { type: 'ckpt.none'; skipped: { step: number; reason: string }[] };

/** What the client asks of its run log, and what the log answers. */
/** A step's commit decision (the adapter stamps the wall-clock time it is logged at), or a read of one step's record. */
export type RunLogCommand = { type: 'log.append'; record: Omit<RunLogRecord, 'at'> } | { type: 'log.read'; step: number };
/**
 * `conflict`: refused (already committed with another hash, or a gap), never retried; `unavailable`: no answer in time,
 * retried as a new attempt. `log.record`: the record a `log.read` asked for (none: the step is not logged).
 */
export type RunLogEvent =
  | { type: 'log.appended'; step: number }
  | { type: 'log.record'; step: number; record: RunLogRecord | undefined }
  | { type: 'log.failed'; step: number; problem: 'conflict' | 'unavailable'; detail: string };

export type ClientEvent = WireEvent | RunLogEvent | CheckpointEvent | ClockTick;

function envelope(ctx: ClientContext, kind: string) {
  return envelopeFor(ctx, actorNames.client, kind);
}

function podIndex(event: ClientEvent): number {
  return 'msg' in event ? Number(event.msg.sender.split('/')[1]) : -1;
}

/** The client's failure for the attempt in flight. */
function failed(ctx: ClientContext, cause: FailureCause, from?: { pod: number; host?: number }): ClientFailure {
  return { step: ctx.step, attempt: ctx.attempt, ...from, cause };
}

const podList = (ctx: ClientContext) => Array.from({ length: ctx.topology.pods }, (_, p) => p);

/** Pods that have not said, since the wait began, that every one of their hosts is up. */
function podsNotReady(ctx: ClientContext): number[] {
  return podList(ctx).filter((p) => !(ctx.heardSinceWait[p] && ctx.podReady[p]));
}

/** The pod silent the longest past `misses` heartbeat intervals, if any. */
function silentPod(ctx: ClientContext, now: number): { pod: number; ms: number } | undefined {
  const limit = ctx.topology.heartbeat.intervalMs * ctx.topology.heartbeat.misses;
  const s = longestSilence(ctx.podSeen, now, () => limit);
  return s && { pod: s.index, ms: s.ms };
}

/** How long the client resends a commit before giving up on it. */
function commitGiveUpMs(ctx: ClientContext): number {
  const t = ctx.topology;
  return Math.max(t.deadlines.stepMs + t.deadlines.phaseMs, (t.recovery.maxResends + 1) * t.heartbeat.intervalMs);
}

/** The step attempt an event reports on is one dispatched after the head. */
function aheadOf(ctx: ClientContext, event: ClientEvent): ClientAhead | undefined {
  if (!('msg' in event)) return undefined;
  return ctx.ahead.find((a) => a.step === event.msg.step && a.attempt === event.msg.attempt);
}

/** step.dispatch of step `step`, attempt `attempt`, to pod `p`: its share of the global batch, and what is committed so far. */
function dispatchTo(ctx: ClientContext, p: number, step: number, attempt: number): WireCommand {
  return {
    type: 'wire.send',
    subject: subjects.podCmd(ctx.runId, p),
    message: {
      ...envelope({ ...ctx, step, attempt }, `step.dispatch.${p}`),
      kind: 'step.dispatch',
      samples: podSamples(ctx.topology.training.globalBatch, ctx.topology.pods, p),
      committed: ctx.step - 1,
    },
  };
}

/**
 * Where a restarted client finds the pods, against the run log's last record L (`resumed`), from their
 * heartbeats (each carries the pod's step, attempt and phase):
 * - `logged`: every pod prepared L's attempt, or committed L, and some not yet past it: finish L's commit (pods that
 *   committed confirm it again);
 * - `past`: every pod is past L (it committed L, perhaps at another attempt than the logged one, in a replay): L is
 *   recorded as committed, from its logged record, and the run goes on from L+1;
 * - `commit` K: the pods replay behind L (after a restore) and some committed step K, or commit it: finish K's commit
 *   (a replayed step is logged already), at the attempt the pods prepared;
 * - `run` K: the pods replay behind L at step K and none has committed it: run K again.
 * A pod that says it is idle below another pod's step is not counted: it is a pod scheduler restarted since, which
 * knows no step (it takes the next dispatch or commit, whatever its step).
 */
export function podsPlace(
  ctx: Pick<ClientContext, 'resumed' | 'podAt' | 'podPhase' | 'topology'>,
): { kind: 'logged' } | { kind: 'past'; step: number } | { kind: 'commit'; step: number; attempt: number } | { kind: 'run'; step: number } {
  const logged = ctx.resumed;
  const pods = Array.from({ length: ctx.topology.pods }, (_, p) => p);
  const top = Math.max(...pods.map((p) => ctx.podAt[p].step));
  const placed = pods.filter((p) => !(ctx.podPhase[p] === 'idle' && ctx.podAt[p].step < top));
  if (!logged || placed.length === 0) return { kind: 'logged' };
  if (placed.every((p) => ctx.podAt[p].step === logged.step + 1)) return { kind: 'past', step: logged.step + 1 };
  const holdsLogged = (p: number) =>
    ctx.podAt[p].step === logged.step + 1 ||
    (ctx.podAt[p].step === logged.step && ctx.podAt[p].attempt === logged.attempt && ['prepared', 'committing'].includes(ctx.podPhase[p]));
  if (placed.every(holdsLogged)) return { kind: 'logged' };
  const step = Math.min(...placed.map((p) => ctx.podAt[p].step));
  const atStep = placed.filter((p) => ctx.podAt[p].step === step);
  const preparing = atStep.filter((p) => ['prepared', 'committing'].includes(ctx.podPhase[p]));
  if (preparing.length > 0 && (atStep.length < placed.length || atStep.some((p) => ctx.podPhase[p] === 'committing')))
    return { kind: 'commit', step, attempt: Math.max(...preparing.map((p) => ctx.podAt[p].attempt)) };
  return { kind: 'run', step };
}

/**
 * The attempt a restarted client numbers replayed steps from: above every attempt an earlier life of the client can
 * have used for them (each life numbers a step's attempts from its floor, at most `maxAttempts` of them, and raises the
 * floor past what it used at each of at most `maxRestarts` restores), so no replayed message carries the id of an
 * earlier one (and is dropped as a repeat).
 */
function replayFloor(ctx: ClientContext): number {
  const r = ctx.topology.recovery;
  const seen = Math.max(ctx.maxAttempt, ctx.resumed?.attempt ?? 0, ...ctx.podAt.map((a) => a.attempt));
  return seen + 1 + r.maxAttempts * (r.maxRestarts + 1);
}

function hashesAgree(ctx: ClientContext): boolean {
  const hashes = podList(ctx).map((p) => ctx.prepared.get(p)!.paramsHash);
  return hashes.every((h) => h === hashes[0]);
}

/** pod.prepared wherever the head may be reported: the head's, or a step's dispatched after it. */
const onPodPrepared = [
  { guard: 'forThisAttempt', actions: 'storePrepared' },
  { guard: 'forAhead', actions: 'storeAheadPrepared' },
  { actions: 'reject' },
] as const;

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    input: {} as ClientInput,
    events: {} as ClientEvent,
    output: {} as ClientOutput,
    emitted: {} as StepRecord,
  },
  actors: {
    wire: fromCallback<WireCommand>(() => {
      throw new Error('clientMachine: provide the `wire` actor');
    }),
    /** Sends `clock.tick` every heartbeat interval (see `ticker`); provided by the adapter. */
    clock: fromCallback<{ type: 'noop' }, { everyMs: number }>(() => {
      throw new Error('clientMachine: provide the `clock` actor');
    }),
    /** The durable run log; provided by the adapter: answers log.append with log.appended or log.failed. */
    runlog: fromCallback<RunLogCommand>(() => {
      throw new Error('clientMachine: provide the `runlog` actor');
    }),
    /** The checkpoint store; provided by the adapter: answers ckpt.find with the newest usable checkpoint. */
    checkpoints: fromCallback<CheckpointCommand>(() => {
      throw new Error('clientMachine: provide the `checkpoints` actor');
    }),
  },
  delays: {
    stepDeadline: ({ context }) => context.topology.deadlines.stepMs,
    phaseDeadline: ({ context }) => context.topology.deadlines.phaseMs,
    startupDeadline: ({ context }) => context.topology.deadlines.startupMs,
    resendDelay: ({ context }) => context.topology.heartbeat.intervalMs,
    abortWait: ({ context }) => context.topology.heartbeat.intervalMs * context.topology.heartbeat.misses,
    /** Longer than a pod's own wait for its hosts' commits (so the pod can say which host is missing first), and than every resend. */
    commitGiveUp: ({ context }) => commitGiveUpMs(context),
  },
  guards: {
    forThisAttempt: ({ context, event }) => 'msg' in event && stepMismatch(context, event.msg) === undefined,
    /** A report on a step dispatched after the head. */
    forAhead: ({ context, event }) => aheadOf(context, event) !== undefined,
    /** The head failed while it was a step ahead (a pod said so then). */
    headFailed: ({ context }) => context.failure !== undefined,
    allPrepared: ({ context }) => context.prepared.size === context.topology.pods,
    allPreparedAndAgree: ({ context }) => context.prepared.size === context.topology.pods && hashesAgree(context),
    allCommitted: ({ context }) => context.committed.size === context.topology.pods,
    allCommittedAndDone: ({ context }) => context.committed.size === context.topology.pods && context.step + 1 >= context.steps,
    allAborted: ({ context }) => context.aborted.size === context.topology.pods,
    allStopped: ({ context }) => context.stopped.size === context.topology.pods,
    /** A failed attempt is retried unless the pods disagreed (a bug, not a fault) or the attempts are used up. */
    canRetry: ({ context }) =>
      context.failure !== undefined &&
      context.failure.cause.kind !== 'hashMismatch' &&
      !(context.failure.cause.kind === 'runLog' && context.failure.cause.problem === 'conflict') &&
      context.tries < context.topology.recovery.maxAttempts,
    isResuming: ({ context }) => context.resumed !== undefined,
    /**
     * Every pod heard from since the client started and, unless the client resumes a run in flight, all its hosts up;
     * a restarted client also waits for pods that restore a checkpoint (its predecessor asked them to) to finish.
     */
    allPodsJoined: ({ context }) =>
      podList(context).every(
        (p) =>
          context.heardSinceWait[p] &&
          (context.podReady[p] || context.resumed !== undefined) &&
          (context.resumed === undefined || context.podPhase[p] !== 'restoring'),
      ),
    /** A restarted client: the pods replay behind the logged step, and some committed (or commit) the step they are at. */
    podsCommitReplayed: ({ context }) => podsPlace(context).kind === 'commit',
    /** A restarted client: every pod is past the logged step (committed it). */
    podsPast: ({ context }) => podsPlace(context).kind === 'past',
    /** A restarted client: the pods replay behind the logged step, and none has committed the step they are at. */
    podsRun: ({ context }) => podsPlace(context).kind === 'run',
    isColdResume: ({ context }) => context.replayUntil >= 0 && context.restores.length === 0 && context.step > context.replayUntil,
    /** A pod says (since the failure) that a host has no replica left to heal from. */
    someHostLost: ({ context }) => podList(context).some((p) => context.heardSinceWait[p] && context.podLost[p].length > 0),
    reportsLostHost: ({ event }) => event.type === 'pod.heartbeat' && event.msg.lostHosts.length > 0,
    canRestore: ({ context }) => context.restores.length < context.topology.recovery.maxRestarts,
    allPodsReady: ({ context }) => podsNotReady(context).length === 0,
    /** A pod idle well after the dispatch never got it, or was restarted meanwhile: this attempt cannot finish. */
    podIdleInAttempt: ({ context, event }) =>
      event.type === 'pod.heartbeat' &&
      event.msg.phase === 'idle' &&
      event.at - context.dispatchedAt > 2 * context.topology.heartbeat.intervalMs,
    canResend: ({ context }) => context.resends < context.topology.recovery.maxResends,
    somePodSilent: ({ context, event }) => silentPod(context, timeOf(event, context.now)) !== undefined,
  },
  actions: {
    /** Count a message that does not belong here; the state is left as it was. */
    reject: assign(({ context, event }) => rejection(context, event as never)),
    setPhase: assign((_, params: { phase: ClientContext['phase'] }) => ({ phase: params.phase })),
    /** The step being committed is logged, so committed: a restore started now replays up to it and goes on after it. */
    passLoggedStep: assign(({ context }) => ({ step: context.step + 1, loggedUnconfirmed: context.step })),
    /**
     * A restarted client that finds the pods past the logged step, or replaying behind it: go on from where they are
     * (`podsPlace`; a step up to the logged one is a replay), numbering attempts above every one used before.
     */
    joinReplay: assign(({ context }) => {
      const place = podsPlace(context);
      const floor = replayFloor(context);
      const step = place.kind === 'logged' ? context.step : place.step;
      const logged = context.resumed?.step;
      return {
        replayUntil: Math.max(context.replayUntil, logged ?? -1),
        // the logged step's commit may have been cut short in every earlier life (by a restore, then this restart):
        // its replay is reported as a finished commit (recovered), not only as a replay
        ...(place.kind !== 'logged' && place.kind !== 'past' && logged !== undefined && logged >= step
          ? { loggedUnconfirmed: logged }
          : {}),
        step,
        attempt: place.kind === 'commit' ? place.attempt : floor - 1,
        attemptFloor: floor,
        maxAttempt: floor - 1,
        tries: 0,
        // a replayed step's commit is finished with its logged record (read next); a step run again needs none
        resumed: undefined,
      };
    }),
    /** Note the time a tick carries (what xstate's own events, which carry none, fall back to). */
    noteTime: assign(({ context, event }) => ({ now: Math.max(context.now, timeOf(event, context.now)) })),
    /**
     * Dispatch the head, step s (attempt a+1 to every pod with its share of the global batch), unless it was
     * dispatched already as a step ahead; then every step after it up to `dispatch.depth` in flight, the same
     * attempt (so that every dispatch after a retry is newer than everything before it).
     */
    dispatch: enqueueActions(({ context, event, enqueue }) => {
      const now = Math.max(context.now, timeOf(event, context.now));
      const promoted = context.ahead[0]?.step === context.step ? context.ahead[0] : undefined;
      const attempt = promoted ? promoted.attempt : context.attempt + 1;
      const dispatchedAt = promoted ? promoted.dispatchedAt : now;
      const ctx = { ...context, attempt };
      if (!promoted) for (const p of podList(context)) enqueue.sendTo('wire', dispatchTo(ctx, p, context.step, attempt));
      const ahead = promoted ? context.ahead.slice(1) : [];
      const last = Math.min(context.steps, context.step + context.topology.dispatch.depth);
      for (let s = context.step + 1; s < last; s++) {
        if (ahead.some((a) => a.step === s)) continue;
        for (const p of podList(context)) enqueue.sendTo('wire', dispatchTo(ctx, p, s, attempt));
        ahead.push({ step: s, attempt, dispatchedAt: now, prepared: new Map(), failure: undefined });
      }
      enqueue.assign({
        attempt,
        maxAttempt: Math.max(context.maxAttempt, attempt),
        tries: context.tries + 1,
        now,
        dispatchedAt,
        prepared: promoted ? promoted.prepared : new Map(),
        committed: new Map(),
        aborted: new Set(),
        resends: 0,
        ahead,
        ...(promoted?.failure ? { failure: promoted.failure } : {}),
        ...(context.tries === 0 ? { stepStartedAt: dispatchedAt } : {}),
      });
    }),
    /** A pod's report on a step dispatched after the head: kept for when it is the head. */
    storeAheadPrepared: assign(({ context, event }) => {
      const slot = aheadOf(context, event);
      if (event.type !== 'pod.prepared' || !slot) return {};
      const p = podIndex(event);
      if (slot.prepared.has(p)) return { duplicates: context.duplicates + 1 };
      return { ahead: context.ahead.map((a) => (a === slot ? { ...a, prepared: new Map(a.prepared).set(p, event.msg) } : a)) };
    }),
    /** A pod failed a step dispatched after the head: that attempt is aborted (with every later one) once it is the head. */
    storeAheadFailure: assign(({ context, event }) => {
      const slot = aheadOf(context, event);
      if (event.type !== 'pod.failed' || !slot || slot.failure) return {};
      const from = { pod: podIndex(event), ...(event.msg.host >= 0 ? { host: event.msg.host } : {}) };
      const failure = failed({ ...context, step: slot.step, attempt: slot.attempt }, event.msg.cause, from);
      return { ahead: context.ahead.map((a) => (a === slot ? { ...a, failure } : a)) };
    }),
    /** The head is aborted: so is every step dispatched after it (the pods and hosts drop them too); they are dispatched again. */
    dropAhead: assign({ ahead: () => [] }),
    storePrepared: assign(({ context, event }) => {
      if (event.type !== 'pod.prepared') return {};
      const p = podIndex(event);
      if (context.prepared.has(p)) return { duplicates: context.duplicates + 1 };
      return { prepared: new Map(context.prepared).set(p, event.msg) };
    }),
    storeCommitted: assign(({ context, event }) =>
      event.type === 'pod.committed' ? { committed: new Map(context.committed).set(podIndex(event), event.msg) } : {},
    ),
    storeAborted: assign(({ context, event }) => ({ aborted: new Set(context.aborted).add(podIndex(event)) })),
    storeStopped: assign(({ context, event }) =>
      event.type === 'pod.stopped' ? { stopped: new Map(context.stopped).set(podIndex(event), event.msg) } : {},
    ),
    /**
     * Send `kind` to every pod; `missingOnly`: a resent commit goes only to the pods that have not confirmed it (one
     * that confirmed and restarted since would take it for a step it must commit, and its hosts may have healed past it).
     */
    tell: enqueueActions(
      ({ context, enqueue }, params: { kind: 'step.commit' | 'step.abort' | 'run.end'; reason?: string; missingOnly?: boolean }) => {
        for (const p of podList(context)) {
          if (params.missingOnly && context.committed.has(p)) continue;
          const base = envelope(context, `${params.kind}.${p}.r${context.resends}`);
          enqueue.sendTo('wire', {
            type: 'wire.send',
            subject: subjects.podCmd(context.runId, p),
            message:
              params.kind === 'step.abort'
                ? { ...base, kind: 'step.abort', reason: params.reason ?? describeFailure(context.failure) }
                : { ...base, kind: params.kind },
          } satisfies WireCommand);
        }
      },
    ),
    tellRestore: enqueueActions(({ context, enqueue }) => {
      const r = context.restore!;
      for (const p of podList(context)) {
        if (context.restoredPods.has(p)) continue;
        enqueue.sendTo('wire', {
          type: 'wire.send',
          subject: subjects.podCmd(context.runId, p),
          message: {
            ...envelope(context, `run.restore.${p}.${r.checkpoint}.r${context.resends}`),
            kind: 'run.restore',
            checkpoint: r.checkpoint,
            paramsHash: r.paramsHash,
          },
        } satisfies WireCommand);
      }
      enqueue.assign({ resends: context.resends + 1 });
    }),
    /**
     * A restarted client whose pods all committed the logged step (they are past it): record it from the run log's record
     * (its predecessor may have reported it already): its hash is every pod's, since a commit needs every pod's agreement.
     */
    recordLoggedStep: enqueueActions(({ context, enqueue }) => {
      const r = context.resumed!;
      const podHashes = podList(context).map(() => r.paramsHash);
      enqueue.emit({
        type: 'step.committed',
        step: r.step,
        attempt: r.attempt,
        loss: r.loss,
        paramsHash: r.paramsHash,
        podHashes,
        podsAgree: true,
        phaseMs: {},
        ms: 0,
        shardHashes: [],
        // the pods' waits for this step's dispatch were reported to a predecessor, not to this client
        waitedMs: 0,
        recovered: true,
        ...(r.step <= context.replayUntil ? { replayed: true } : {}),
      } satisfies StepRecord);
      enqueue.assign({
        stepsCommitted: context.stepsCommitted + 1,
        lossFirst: context.lossFirst ?? r.loss,
        lossLast: r.loss,
        paramsHash: r.paramsHash,
        podHashes,
      });
    }),
    /** Record the committed step: loss summed over pods in pod order, every pod's hash. */
    recordStep: enqueueActions(({ context, event, enqueue }) => {
      const pods = podList(context).flatMap((p) => context.prepared.get(p) ?? []);
      let loss = context.resumed?.loss ?? 0;
      if (!context.resumed) for (const p of pods) loss += p.lossSum;
      const podHashes = podList(context).map((p) => context.committed.get(p)!.paramsHash);
      const phaseMs: PhaseTimes = {};
      for (const p of pods)
        for (const [k, v] of Object.entries(p.phaseMs) as [keyof PhaseTimes, number][]) phaseMs[k] = Math.max(phaseMs[k] ?? 0, v);
      const record: StepRecord = {
        type: 'step.committed',
        waitedMs: pods.length === 0 ? 0 : pods.reduce((n, p) => n + p.waitedMs, 0) / pods.length,
        step: context.step,
        attempt: context.attempt,
        loss,
        paramsHash: podHashes[0],
        podHashes,
        podsAgree: podHashes.every((h) => h === podHashes[0]),
        phaseMs,
        ms: context.resumed ? 0 : timeOf(event, context.now) - context.stepStartedAt,
        shardHashes: context.prepared.get(0)?.shardHashes ?? [],
        ...(context.resumed || context.step === context.loggedUnconfirmed ? { recovered: true } : {}),
        ...(context.step <= context.replayUntil && context.step !== context.loggedUnconfirmed ? { replayed: true } : {}),
      };
      enqueue.emit(record);
      if ((record.step + 1) % context.topology.checkpoint.everySteps === 0 && record.shardHashes.length === context.topology.hostsPerPod) {
        const manifest = {
          format: 'lockstep-checkpoint/1' as const,
          runId: context.runId,
          step: record.step,
          attempt: record.attempt,
          paramsHash: record.paramsHash,
          shardHashes: record.shardHashes,
          pods: context.topology.pods,
        };
        enqueue.sendTo('checkpoints', { type: 'ckpt.writeManifest', manifest } satisfies CheckpointCommand);
      }
      enqueue.assign({
        stepsCommitted: context.stepsCommitted + 1,
        lossFirst: context.lossFirst ?? loss,
        lossLast: loss,
        paramsHash: podHashes[0],
        podHashes,
        ...(context.step === context.loggedUnconfirmed ? { loggedUnconfirmed: undefined } : {}),
      });
    }),
    /** On to the next step, numbered with the attempts of this one (a step dispatched already keeps its own). */
    nextStep: assign(({ context }) => ({
      step: context.step + 1,
      attempt: Math.max(context.attemptFloor, context.attempt) - 1,
      tries: 0,
      resumed: undefined,
    })),
    /** Number the next attempt past any a pod has seen for this step or a later one (a restarted client does not know how far the last one got). */
    catchUpAttempt: assign(({ context }) => ({
      attempt: Math.max(context.attempt, ...context.podAt.filter((a) => a.step >= context.step).map((a) => a.attempt)),
    })),
    podsNotReady: assign(({ context }) => ({
      failure: failed(context, {
        kind: 'podsNotReady',
        ms: context.topology.deadlines.startupMs,
        pods: podsNotReady(context).map((p) => ({
          pod: p,
          silentHosts: context.heardSinceWait[p] ? context.podSilentHosts[p] : [],
        })),
      }),
    })),
    countResend: assign(({ context }) => ({ resends: context.resends + 1 })),
    notePod: assign(({ context, event }) => {
      if (!('msg' in event)) return {};
      const p = podIndex(event);
      const podSeen = [...context.podSeen];
      podSeen[p] = event.at;
      const heardSinceWait = [...context.heardSinceWait];
      heardSinceWait[p] = true;
      if (event.type !== 'pod.heartbeat') return { podSeen, now: Math.max(context.now, event.at) };
      const podPhase = [...context.podPhase];
      podPhase[p] = event.msg.phase;
      const podReady = [...context.podReady];
      podReady[p] = event.msg.ready;
      const podSilentHosts = [...context.podSilentHosts];
      podSilentHosts[p] = event.msg.silentHosts;
      const podLost = [...context.podLost];
      podLost[p] = event.msg.lostHosts;
      const podAt = [...context.podAt];
      podAt[p] = { step: event.msg.step, attempt: event.msg.attempt };
      return { podSeen, podPhase, podReady, podAt, podSilentHosts, podLost, heardSinceWait, now: Math.max(context.now, event.at) };
    }),
    podIdle: assign(({ context, event }) => ({ failure: failed(context, { kind: 'idle', actor: actorNames.pod(podIndex(event)) }) })),
    podStopped: assign(({ context, event }) => ({
      failure: failed(context, { kind: 'stopped', actor: actorNames.pod(podIndex(event)) }, { pod: podIndex(event) }),
    })),
    podSilent: assign(({ context, event }) => {
      const s = silentPod(context, timeOf(event, context.now))!;
      return { failure: failed(context, { kind: 'silent', actor: actorNames.pod(s.pod), ms: s.ms, lastPhase: context.podPhase[s.pod] }) };
    }),
    noteRetry: assign(({ context }) => ({
      retried: [...context.retried, context.failure!],
      failure: undefined,
      resends: 0,
    })),
    hashMismatch: assign(({ context }) => ({
      failure: failed(context, {
        kind: 'hashMismatch',
        hashes: podList(context).map((p) => ({ pod: p, paramsHash: context.prepared.get(p)!.paramsHash })),
      }),
    })),
    /** A pod's failure: its cause as it sent it, with the pod and the host it relayed it from. */
    podFailed: assign(({ context, event }) => {
      assertEvent(event, 'pod.failed');
      const from = { pod: podIndex(event), ...(event.msg.host >= 0 ? { host: event.msg.host } : {}) };
      return { failure: failed(context, event.msg.cause, from) };
    }),
    /** No pod.prepared from every pod within the step deadline. */
    deadline: assign(({ context }) => ({
      failure: failed(context, {
        kind: 'deadline',
        actor: actorNames.client,
        phase: 'awaitPrepared',
        ms: context.topology.deadlines.stepMs,
        waitingFor: 'pod.prepared',
        peers: podList(context)
          .filter((p) => !context.prepared.has(p))
          .map((p) => ({ actor: actorNames.pod(p), lastPhase: context.podPhase[p] })),
      }),
    })),
    /** A commit is never taken back: the client resent it until it gave up, and these pods never confirmed it. */
    commitNotConfirmed: assign(({ context }) => ({
      failure: failed(context, {
        kind: 'commitNotConfirmed',
        actor: actorNames.client,
        ms: commitGiveUpMs(context),
        peers: podList(context)
          .filter((p) => !context.committed.has(p))
          .map((p) => ({ actor: actorNames.pod(p), lastPhase: context.podPhase[p] })),
      }),
    })),
  },
}).createMachine({
  id: 'client',
  context: ({ input }) => ({
    topology: input.topology,
    runId: input.runId,
    incarnation: input.incarnation,
    now: input.now ?? 0,
    steps: input.steps,
    step: input.resume ? input.resume.step + (input.cold ? 1 : 0) : (input.firstStep ?? 0),
    attempt: input.resume && !input.cold ? input.resume.attempt : -1,
    stepStartedAt: 0,
    prepared: new Map(),
    committed: new Map(),
    aborted: new Set(),
    stopped: new Map(),
    phase: 'joining',
    stepsCommitted: 0,
    lossFirst: undefined,
    lossLast: undefined,
    paramsHash: undefined,
    podHashes: [],
    rejected: {},
    duplicates: 0,
    faultsInjected: 0,
    failure: undefined,
    resends: 0,
    podSeen: Array.from({ length: input.topology.pods }, () => input.now ?? 0),
    podPhase: Array.from({ length: input.topology.pods }, () => 'idle'),
    podReady: Array.from({ length: input.topology.pods }, () => false),
    podSilentHosts: Array.from({ length: input.topology.pods }, () => []),
    podLost: Array.from({ length: input.topology.pods }, () => []),
    restore: undefined,
    restoredPods: new Set(),
    restores: [],
    replayUntil: input.cold && input.resume ? input.resume.step : -1,
    loggedUnconfirmed: undefined,
    attemptFloor: 0,
    maxAttempt: input.resume?.attempt ?? 0,
    podAt: Array.from({ length: input.topology.pods }, () => ({ step: 0, attempt: 0 })),
    heardSinceWait: Array.from({ length: input.topology.pods }, () => false),
    tries: 0,
    dispatchedAt: 0,
    resumed: input.cold ? undefined : input.resume,
    retried: [],
    ahead: [],
  }),
  invoke: [
    { id: 'wire', src: 'wire' },
    { id: 'runlog', src: 'runlog' },
    { id: 'checkpoints', src: 'checkpoints' },
    { id: 'clock', src: 'clock', input: ({ context }) => ({ everyMs: context.topology.heartbeat.intervalMs }) },
  ],
  initial: 'joining',
  on: {
    'wire.faultInjected': { actions: assign({ faultsInjected: ({ context, event }) => context.faultsInjected + event.count }) },
    // a pod that stopped while the run goes on takes no more steps: its counts are kept, and the run ends at once, naming it
    'pod.stopped': { target: '.finishing', actions: ['storeStopped', 'podStopped'] },
    'pod.heartbeat': { actions: 'notePod' },
    // reports on a step dispatched after the head, whatever the head is doing: kept for when it is the head
    'pod.prepared': [{ guard: 'forAhead', actions: 'storeAheadPrepared' }, { actions: 'reject' }],
    'pod.failed': [{ guard: 'forAhead', actions: 'storeAheadFailure' }, { actions: 'reject' }],
    'clock.tick': { actions: 'noteTime' },
    '*': { actions: 'reject' },
  },
  states: {
    /**
     * Every pod says, in a heartbeat, that all its hosts are up: each has reached its cross-pod peers
     * (and healed, if restarted). A restarted client only needs each pod to be heard: its commit resends
     * and restores cope with hosts that are not up. A host lost (restarted with no replica left): restore.
     * Not all by the start-up deadline: the run ends, podsNotReady.
     */
    joining: {
      entry: { type: 'setPhase', params: { phase: 'joining' } },
      always: [
        { guard: 'allPodsJoined', target: 'start' },
        // a host that crashed at start-up with its replica: no one holds its shard; a restore gives it one
        // (a restarted client's logged step is committed: the restore replays up to it, and goes on after it)
        { guard: and(['someHostLost', 'canRestore', 'isResuming']), target: 'findingCheckpoint', actions: 'passLoggedStep' },
        { guard: and(['someHostLost', 'canRestore']), target: 'findingCheckpoint' },
      ],
      after: { startupDeadline: { target: 'finishing', actions: 'podsNotReady' } },
    },
    start: {
      always: [
        { guard: 'isColdResume', target: 'findingCheckpoint' },
        // a restarted client asks where the pods are before it acts: they may replay steps far behind the logged one
        { guard: and(['isResuming', 'podsCommitReplayed']), target: 'readingLog', actions: 'joinReplay' },
        { guard: and(['isResuming', 'podsPast']), target: 'awaitPods', actions: ['recordLoggedStep', 'joinReplay'] },
        { guard: and(['isResuming', 'podsRun']), target: 'awaitPods', actions: 'joinReplay' },
        { guard: 'isResuming', target: 'committing' },
        { guard: ({ context }) => context.step >= context.steps, target: 'finishing' },
        { target: 'awaitPrepared' },
      ],
    },
    /** A restarted client finishing a replayed step's commit: that step's record from the run log (its loss), then committing. */
    readingLog: {
      entry: [
        { type: 'setPhase', params: { phase: 'readingLog' } },
        sendTo('runlog', ({ context }): RunLogCommand => ({ type: 'log.read', step: context.step })),
      ],
      on: {
        'log.record': [
          {
            guard: ({ context, event }) => event.step === context.step && event.record !== undefined,
            target: 'committing',
            actions: assign(({ event }) => ({ resumed: event.type === 'log.record' ? event.record : undefined })),
          },
          {
            guard: ({ context, event }) => event.step === context.step,
            target: 'finishing',
            actions: assign(({ context }) => ({
              failure: failed(context, {
                kind: 'runLog',
                problem: 'conflict',
                detail: `the pods committed step ${context.step}, which the run log does not hold`,
              }),
            })),
          },
          { actions: 'reject' },
        ],
        'log.failed': [
          {
            guard: ({ context, event }) => event.step === context.step,
            target: 'finishing',
            actions: assign(({ context, event }) => ({
              failure: failed(context, { kind: 'runLog', problem: event.problem, detail: event.detail }),
            })),
          },
          { actions: 'reject' },
        ],
      },
      after: {
        phaseDeadline: {
          target: 'finishing',
          actions: assign(({ context }) => ({
            failure: failed(context, {
              kind: 'runLog',
              problem: 'unavailable',
              detail: `no answer to a read of step ${context.step} within ${context.topology.deadlines.phaseMs} ms`,
            }),
          })),
        },
      },
    },
    awaitPrepared: {
      entry: [{ type: 'setPhase', params: { phase: 'awaitPrepared' } }, 'dispatch'],
      always: [
        // a pod failed it while it was a step ahead
        { guard: 'headFailed', target: 'aborting' },
        { guard: 'allPreparedAndAgree', target: 'logging' },
        { guard: 'allPrepared', target: 'aborting', actions: 'hashMismatch' },
      ],
      on: {
        'pod.prepared': onPodPrepared,
        'pod.failed': [
          { guard: 'forThisAttempt', target: 'aborting', actions: 'podFailed' },
          { guard: 'forAhead', actions: 'storeAheadFailure' },
          { actions: 'reject' },
        ],
        // a pod scheduler that stops heartbeating (crashed, or stalled) fails the attempt, named
        'clock.tick': [{ guard: 'somePodSilent', target: 'aborting', actions: ['noteTime', 'podSilent'] }, { actions: 'noteTime' }],
        'pod.heartbeat': [{ guard: 'podIdleInAttempt', target: 'aborting', actions: ['notePod', 'podIdle'] }, { actions: 'notePod' }],
      },
      after: { stepDeadline: { target: 'aborting', actions: 'deadline' } },
    },
    /** The commit point: the decision goes to the durable run log before any pod hears of it. */
    logging: {
      entry: [
        { type: 'setPhase', params: { phase: 'logging' } },
        sendTo('runlog', ({ context }): RunLogCommand => {
          let loss = 0;
          for (const p of podList(context)) loss += context.prepared.get(p)!.lossSum;
          return {
            type: 'log.append',
            record: {
              step: context.step,
              attempt: context.attempt,
              paramsHash: context.prepared.get(0)!.paramsHash,
              loss,
            },
          };
        }),
      ],
      on: {
        'log.appended': [{ guard: ({ context, event }) => event.step === context.step, target: 'committing' }, { actions: 'reject' }],
        // refused (already committed, or a gap: never retried) or unreachable (retried as a new attempt): nothing was committed yet
        'log.failed': [
          {
            guard: ({ context, event }) => event.step === context.step,
            target: 'aborting',
            actions: assign(({ context, event }) => ({
              failure: failed(context, { kind: 'runLog', problem: event.problem, detail: event.detail }),
            })),
          },
          { actions: 'reject' },
        ],
        'pod.prepared': onPodPrepared,
      },
    },
    committing: {
      entry: [
        { type: 'setPhase', params: { phase: 'committing' } },
        { type: 'tell', params: { kind: 'step.commit' } },
      ],
      always: [
        { guard: 'allCommittedAndDone', target: 'finishing', actions: 'recordStep' },
        // a restarted client has finished its predecessor's commit: wait for the pods to say where they are before going on
        {
          guard: ({ context }) => context.committed.size === context.topology.pods && context.resumed !== undefined,
          target: 'awaitPods',
          actions: ['recordStep', 'nextStep'],
        },
        { guard: 'allCommitted', target: 'awaitPrepared', actions: ['recordStep', 'nextStep'] },
      ],
      on: {
        'pod.committed': [{ guard: 'forThisAttempt', actions: 'storeCommitted' }, { actions: 'reject' }],
        // a pod that cannot get its hosts to commit says which host: the run ends with that
        'pod.failed': [
          { guard: 'forThisAttempt', target: 'finishing', actions: 'podFailed' },
          { guard: 'forAhead', actions: 'storeAheadFailure' },
          { actions: 'reject' },
        ],
        // every replica of a shard is gone (its holders crashed before one could hand it on): the commit cannot complete
        // in memory; restore the newest checkpoint and replay up to this step (which must come out with its logged hash)
        // (the step is logged, so committed: the restore replays up to it, and goes on after it)
        'pod.heartbeat': [
          { guard: and(['reportsLostHost', 'canRestore']), target: 'findingCheckpoint', actions: ['notePod', 'passLoggedStep'] },
          { actions: 'notePod' },
        ],
      },
      after: { commitGiveUp: { target: 'finishing', actions: 'commitNotConfirmed' } },
      // once sent, a commit is never taken back: resend it every heartbeat interval until every pod confirms
      // (a pod scheduler restarted meanwhile learns of the step from it)
      initial: 'sent',
      states: {
        sent: {
          after: {
            resendDelay: {
              guard: 'canResend',
              target: 'sent',
              reenter: true,
              actions: ['countResend', { type: 'tell', params: { kind: 'step.commit', missingOnly: true } }],
            },
          },
        },
      },
    },
    /** The head is aborted, and every step dispatched after it with it: the pods and hosts drop them all. */
    aborting: {
      entry: [{ type: 'setPhase', params: { phase: 'aborting' } }, { type: 'tell', params: { kind: 'step.abort' } }, 'dropAhead'],
      always: { guard: 'allAborted', target: 'retryOrEnd' },
      on: {
        'pod.aborted': [{ guard: 'forThisAttempt', actions: 'storeAborted' }, { actions: 'reject' }],
        // a pod that fails while the others abort cannot confirm; the next attempt's dispatch supersedes it anyway
        'pod.failed': [{ guard: 'forThisAttempt', actions: 'storeAborted' }, { actions: 'reject' }],
      },
      // a pod that is down cannot confirm; the next attempt's dispatch supersedes the aborted one anyway
      after: { abortWait: 'retryOrEnd' },
    },
    /** Retry the step as attempt a+1 (a later dispatch supersedes whatever a pod or host still holds of attempt a), or end the run. */
    retryOrEnd: {
      always: [{ guard: 'canRetry', target: 'awaitPods', actions: 'noteRetry' }, { target: 'finishing' }],
    },
    /**
     * Before a retry: wait until every pod says, in a heartbeat sent after the failure, that all its hosts are up
     * (a crashed process is being restarted and healed meanwhile).
     */
    awaitPods: {
      entry: [
        { type: 'setPhase', params: { phase: 'awaitPods' } },
        assign(({ context }) => ({ heardSinceWait: podList(context).map(() => false) })),
      ],
      always: [
        { guard: 'allPodsReady', target: 'awaitPrepared', actions: 'catchUpAttempt' },
        // every replica of a shard is gone: roll the run back to a checkpoint
        { guard: and(['someHostLost', 'canRestore']), target: 'findingCheckpoint' },
      ],
      after: { startupDeadline: { target: 'finishing', actions: 'podsNotReady' } },
    },
    /** The newest checkpoint before the step in flight whose manifest and every shard check out (none: the initial state). */
    findingCheckpoint: {
      entry: [
        { type: 'setPhase', params: { phase: 'findingCheckpoint' } },
        // the restore drops whatever the pods and hosts hold past the checkpoint
        'dropAhead',
        sendTo('checkpoints', ({ context }): CheckpointCommand => ({ type: 'ckpt.find', atMost: context.step - 1 })),
      ],
      on: {
        'ckpt.found': {
          target: 'restoring',
          actions: assign(({ context, event }) => ({
            restore: { checkpoint: event.step, paramsHash: event.paramsHash, skipped: event.skipped, atStep: context.step },
          })),
        },
        'ckpt.none': {
          target: 'restoring',
          actions: assign(({ context, event }) => ({
            restore: { checkpoint: -1, paramsHash: null, skipped: event.skipped, atStep: context.step },
          })),
        },
      },
      after: {
        phaseDeadline: {
          target: 'finishing',
          actions: assign(({ context }) => ({
            failure: failed(context, { kind: 'restore', checkpoint: context.step - 1, problem: 'storeSilent' }),
          })),
        },
      },
    },
    /** Every pod rolls its hosts back; the parameters must hash to what the checkpoint's manifest says. Then the steps since are replayed. */
    restoring: {
      entry: [{ type: 'setPhase', params: { phase: 'restoring' } }, assign({ restoredPods: () => new Set<number>() }), 'tellRestore'],
      on: {
        'pod.restored': [
          {
            guard: ({ context, event }) =>
              event.msg.checkpoint === context.restore!.checkpoint &&
              context.restore!.paramsHash !== null &&
              event.msg.paramsHash !== context.restore!.paramsHash,
            target: 'finishing',
            actions: assign(({ context, event }) => ({
              failure: failed(context, {
                kind: 'restore',
                checkpoint: context.restore!.checkpoint,
                problem: 'wrongHash',
                actor: actorNames.pod(podIndex(event)),
                paramsHash: { got: event.msg.paramsHash, want: context.restore!.paramsHash! },
              }),
            })),
          },
          {
            guard: ({ context, event }) => event.msg.checkpoint === context.restore!.checkpoint,
            actions: assign({ restoredPods: ({ context, event }) => new Set(context.restoredPods).add(podIndex(event)) }),
          },
          { actions: 'reject' },
        ],
      },
      always: {
        guard: ({ context }) => context.restoredPods.size === context.topology.pods,
        target: 'awaitPods',
        actions: assign(({ context }) => {
          const r = context.restore!;
          return {
            restores: [...context.restores, { atStep: r.atStep, checkpoint: r.checkpoint, skipped: r.skipped }],
            replayUntil: Math.max(context.replayUntil, r.atStep - 1),
            resumed: undefined,
            step: r.checkpoint + 1,
            attempt: context.maxAttempt,
            attemptFloor: context.maxAttempt + 1,
            tries: 0,
            failure: undefined,
          };
        }),
      },
      after: {
        stepDeadline: {
          target: 'finishing',
          actions: assign(({ context }) => ({
            failure: failed(context, {
              kind: 'deadline',
              actor: actorNames.client,
              phase: 'restoring',
              ms: context.topology.deadlines.stepMs,
              waitingFor: 'pod.restored',
              peers: podList(context)
                .filter((p) => !context.restoredPods.has(p))
                .map((p) => ({ actor: actorNames.pod(p), lastPhase: context.podPhase[p] })),
            }),
          })),
        },
      },
      initial: 'told',
      states: { told: { after: { resendDelay: { target: 'told', reenter: true, actions: 'tellRestore' } } } },
    },
    finishing: {
      entry: [
        { type: 'setPhase', params: { phase: 'finishing' } },
        { type: 'tell', params: { kind: 'run.end' } },
      ],
      always: { guard: 'allStopped', target: 'done' },
      on: { 'pod.stopped': { actions: 'storeStopped' } },
      after: { phaseDeadline: 'done' },
    },
    done: { type: 'final', entry: { type: 'setPhase', params: { phase: 'done' } } },
  },
  output: ({ context }) => {
    const pods = [...context.stopped.values()];
    return {
      stepsCommitted: context.stepsCommitted,
      lastStep: context.step,
      loss: { first: context.lossFirst, last: context.lossLast },
      paramsHash: context.paramsHash,
      pods: context.podHashes.map((h, p) => ({ id: actorNames.pod(p), paramsHash: h })),
      rejected: mergeRejections(context.rejected, ...pods.map((p) => p.rejected)),
      duplicates: pods.reduce((n, p) => n + p.duplicates, context.duplicates),
      faultsInjected: pods.reduce((n, p) => n + p.faultsInjected, context.faultsInjected),
      podsReported: pods.length,
      failure: context.failure,
      retried: context.retried,
      restores: context.restores,
    };
  },
});
