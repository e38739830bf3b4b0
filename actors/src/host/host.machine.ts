import { and, assign, not } from 'xstate';
import { actorNames, hostPhaseFloorsMs, initOptimizerState, initParams, shardRanges, Task } from '@lockstep/topology';
import { base, hostSetup } from './host.setup.ts';
import { noServeSlots } from './serve.ts';

export type { HostContext, HostDiskCommand, HostEvent, HostInput, HostWhere, PreparedStep } from './host.setup.ts';

/** host.commit wherever a host may hold prepared steps: commits come in step order, the oldest prepared step first. */
const onCommit = [
  { guard: 'commitsOldest', actions: ['writeCheckpoint', 'commitOldest'] },
  { guard: 'isLastCommitted', actions: 'confirmCommitted' },
  // the commit of a prepared step with one before it not yet committed: the pod commits in step order, so never sent
  { guard: 'commitsLaterPrepared', actions: { type: 'rejectAs', params: { reason: 'commit out of order' } } },
] as const;

/** Every heartbeat interval, wherever a host may hold prepared steps: one that waited too long for its commit fails; the others are said again. */
const onTick = [
  { guard: 'commitOverdue', target: '#host.attempt.failed', actions: ['noteTime', 'sendHeartbeat', 'failOverdueCommit'] },
  { actions: ['noteTime', 'sendHeartbeat', 'resendPrepared'] },
] as const;

/**
 * A host: one replica of the parameters, owner of shard `host` of them.
 *
 *   joining: ping host h of every other pod, again every heartbeat interval, until each answers
 *     (pong): the route between the pods carries both ways before any tensor does; then
 *   start -> healing (a restarted host) or idle; a restarted host in idle told to commit a step
 *     it does not hold prepared (its predecessor prepared it), or dispatched by a pod that has
 *     committed more than it holds (it healed from a peer that was behind its own pod) -> healing again
 *   healing: state.request to host h of every other pod, again every heartbeat
 *     interval; the first answer whose checksum and shard hash check out ->
 *     idle at the step after its last commit. Every peer says "none" (healing
 *     or lost too), or the start-up deadline passes -> lost.
 *   lost: no replica of its shard anywhere; waits for the client to restore a checkpoint.
 *   idle: nothing to compute. host.dispatch is queued in step order (the pod's gang-scheduling
 *     order, whatever order the dispatches came in); the moment the next one is queued -> attempt:
 *     forward -> backward -> reduceScatter (in-pod: host h sums shard h of every
 *     host's gradient, host order; `collectives.inPod: chain`: host k adds its gradient to
 *     the running sum from host k-1 and passes it on, the last host sends each host its shard
 *     of the pod's sum) -> exchange (cross-pod, 1:1 with host h of every
 *     other pod) -> update (sum pods in pod order, optimizer on the shard) ->
 *     allGather (in-pod: every host gets every new shard; chain: host k appends its shard to
 *     the prefix from host k-1 and passes it on, the last host sends every host the whole)
 *     -> prepared: the step joins `pending`
 *     (prepared steps awaiting their commits, reported now and again every heartbeat interval)
 *     -> idle at the next step, which starts at once if its dispatch is queued: with
 *     `dispatch.depth` > 1 it computes on the parameters just prepared, not yet committed.
 *     A missed phase deadline, a failed computation, or two copies of a tensor of the attempt that
 *     differ (before prepared) -> failed (host.failed), until the pod's abort.
 *   Whatever it computes (idle, attempt, failed): host.commit of the oldest pending step adopts its
 *     parameters (commits come in step order; the checkpoint shard is written every
 *     `checkpoint.everySteps` steps); host.abort of a step drops it and every later step (pending,
 *     in flight, queued) of that attempt or an older one -> idle at that step; a dispatch newer than
 *     what the host holds drops what it holds of older attempts the same way. The oldest pending step
 *     not committed within `deadlines.stepMs` fails with everything after it (failed, for that step).
 *   any state --host.restore--> restoring: load the checkpoint -> idle (host.restored).
 *   any state --run.end--> stopped (host.stopped with every count).
 *
 * The pipeline in the context: `step`/`attempt` is what the host computes (or failed, or computes
 * next when idle); `pending` the steps that await their commits (`step` = the step after the last
 * commit + pending.length); `queued` the dispatches it has not started.
 *
 * Throughout: pings from host h of another pod are answered (pong), whatever the state;
 * a heartbeat with the phase every heartbeat interval (`clock.tick`), and none on entering a phase (the pod
 * judges a dispatched host's silence as a computing host's until a heartbeat says otherwise).
 * Peers' state requests are answered with the committed state (never a pending
 * one: it may yet abort), only to host h of
 * a pod whose scheduler said that host heals (heal.expect, which lapses after
 * `heartbeat.misses` intervals unless said again), or with "none" while this
 * host holds none; at most once per half heartbeat interval per peer (by the
 * times the requests carry). Any other request is rejected and counted; the
 * last one a peer made before its pod's word is answered when the word comes,
 * if it is less than an interval old (serve.ts).
 *
 * While it waits for tensors (reduceScatter, exchange, allGather), a host asks
 * each peer whose tensor has not all come (a chain: the first link it lacks) to send it again (tensor.request,
 * every `requestDelay`); a peer answers once it has got that far, also for a
 * step it has prepared since. A lost or corrupt chunk costs a resend, not the attempt.
 * With `compute: modeled` every phase lasts at least its modeled time (`phaseFloorMs`: the cost model's time
 * over `timeScale`): the compute actors wait it out after computing, and a collective ends once its tensors
 * are all in and the `phaseFloor` actor has said its time is over (max(real, modeled)).
 *
 * The committed parameters are never touched before commit: the new ones live
 * in `next`, then in `pending`, until then, so an abort simply drops them. Tensors for the attempt in
 * flight are kept whatever phase they arrive in, and those of a later step or attempt until it
 * starts; anything for another step, attempt or phase is rejected and counted, never applied.
 *
 * Tags: `compute` on the phases that hold the thread (forward, backward,
 * update), `awaitsTensors` on the phases that wait for peers' tensors.
 */
export const hostMachine = hostSetup.createMachine({
  id: 'host',
  context: ({ input }) => {
    const t = input.topology;
    const params = initParams(t.model, t.training.seed);
    const ranges = shardRanges(params.length, t.hostsPerPod);
    const own = ranges[input.host];
    return {
      topology: t,
      runId: input.runId,
      pod: input.pod,
      host: input.host,
      me: actorNames.host(input.pod, input.host),
      incarnation: input.incarnation,
      task: new Task(t.model, t.training.seed),
      ranges,
      step: 0,
      attempt: -1,
      samples: { start: 0, end: 0 },
      params,
      optState: initOptimizerState(t.training.optimizer, own.end - own.start),
      pending: [],
      queued: [],
      freeSince: undefined,
      waitedMs: 0,
      reports: 0,
      acts: undefined,
      lossSum: 0,
      grad: undefined,
      podGrad: undefined,
      partial: undefined,
      prefix: undefined,
      slices: new Map(),
      exchanged: new Map(),
      gathered: new Map(),
      early: [],
      next: undefined,
      phase: 'joining',
      now: input.now ?? 0,
      phaseStartedAt: input.now ?? 0,
      phaseMs: {},
      rejected: {},
      duplicates: 0,
      faultsInjected: 0,
      failure: undefined,
      lastCommitted: undefined,
      resends: 0,
      requests: 0,
      slowest: {},
      restoreTo: -1,
      beats: 0,
      restarted: input.heal === true,
      heal: { asks: 0, answers: new Map(), from: undefined },
      served: 0,
      joined: [],
      pings: 0,
      serving: noServeSlots(t.pods),
      phaseFloorMs: hostPhaseFloorsMs(t),
      phaseTimeOver: false,
      phaseFloorWaiting: false,
    };
  },
  invoke: [
    { id: 'wire', src: 'wire' },
    { id: 'disk', src: 'disk' },
    { id: 'clock', src: 'clock', input: ({ context }) => ({ everyMs: context.topology.heartbeat.intervalMs }) },
  ],
  entry: 'sendHeartbeat',
  initial: 'joining',
  on: {
    'run.end': '.stopped',
    ping: { actions: 'answerPing' },
    // a repeated answer, after this host has joined
    pong: {},
    // the whole run rolls back to a checkpoint: whatever this host was doing is dropped (nothing uncommitted survives)
    'host.restore': {
      target: '.restoring',
      actions: assign({ restoreTo: ({ event }) => event.msg.checkpoint, resends: ({ context }) => context.resends + 1 }),
    },
    'clock.tick': { actions: ['noteTime', 'sendHeartbeat'] },
    // the pod of host h of another pod says that host heals: it may be served for a while (and its early request now)
    'heal.expect': [
      { guard: 'isPeerPod', actions: ['expectHeal', 'serveEarlyAsk'] },
      { actions: { type: 'rejectAs', params: { reason: 'not a peer pod' } } },
    ],
    // a restarted peer heals from this host: the committed state (only to a peer whose pod said it heals), or "none"
    // while it holds none; at most once per half interval per peer, the rest rejected and counted (serve.ts)
    'state.request': [
      { guard: 'canServeState', actions: 'serveState' },
      { guard: 'canSayNone', actions: 'sendStateNone' },
      { actions: ['rejectStateRequest', 'noteEarlyAsk'] },
    ],
    'wire.faultInjected': { actions: 'countFault' },
    // step tensors where no step runs (joining, healing, lost, restoring, stopped): each counted as a rejection
    'tensors.received': { actions: { type: 'takeTensors', params: { where: 'elsewhere' } } },
    // two copies of a tensor differ: held for the next attempt, the copy is let go; anything else is counted
    // (a conflict of the attempt in flight fails it: see `attempt`)
    'tensor.conflict': [{ guard: 'conflictForLater', actions: 'dropEarlyCopy' }, { actions: 'reject' }],
    '*': { actions: 'reject' },
  },
  states: {
    /** Reach host h of every other pod before anything else (a restarted host heals from it next). */
    joining: {
      entry: [{ type: 'enterPhase', params: { phase: 'joining' } }, 'sendPings'],
      on: { pong: { actions: 'notePong' } },
      always: { guard: 'joinedAll', target: 'start' },
      initial: 'pinged',
      states: { pinged: { after: { pingDelay: { target: 'pinged', reenter: true, actions: 'sendPings' } } } },
    },
    start: {
      always: [
        { guard: 'startsHealing', target: 'healing' },
        { target: 'idle', actions: { type: 'sendHeartbeat', params: { phase: 'idle' } } },
      ],
    },
    /** Restarted: the committed state comes from host h of another pod. */
    healing: {
      // the heartbeat says so at once: the pod passes it on to the peers (heal.expect), which serve only on that word
      entry: [{ type: 'enterPhase', params: { phase: 'healing' } }, 'sendHeartbeat', 'beginHealing', 'askForState'],
      on: {
        'tensor.received': [
          { guard: ({ event }) => event.tensor.tensor.startsWith('state.'), actions: 'storeAnswer' },
          { actions: 'reject' },
        ],
        'state.done': { actions: 'storeAnswer' },
        'state.none': { actions: 'storeAnswer' },
      },
      always: [
        { guard: 'healed', target: 'idle', actions: { type: 'sendHeartbeat', params: { phase: 'idle' } } },
        { guard: 'noReplicaLeft', target: 'lost', actions: 'failHealing' },
      ],
      after: { startupDeadline: { target: 'lost', actions: 'failHealing' } },
      initial: 'asked',
      states: { asked: { after: { resendDelay: { target: 'asked', reenter: true, actions: 'askForState' } } } },
    },
    /** Restarted with no replica of its shard left anywhere: it waits for the client to restore a checkpoint. */
    lost: { entry: [{ type: 'enterPhase', params: { phase: 'lost' } }, 'sendHeartbeat'] },
    restoring: {
      entry: { type: 'enterPhase', params: { phase: 'restoring' } },
      invoke: {
        src: 'loadCheckpoint',
        input: ({ context }) => ({ checkpoint: context.restoreTo }),
        onDone: { target: 'idle', actions: ['adoptLoaded', 'sendRestored'] },
        onError: { target: 'lost', actions: { type: 'failFromError', params: { phase: 'restoring' } } },
      },
    },
    /**
     * Nothing to compute: the next dispatch in the pod's order has not come (prepared steps may await their commits
     * meanwhile). It starts the moment it is queued.
     */
    idle: {
      entry: { type: 'enterPhase', params: { phase: 'idle' } },
      always: { guard: 'startsQueued', target: 'attempt', actions: 'beginAttempt' },
      on: {
        'host.dispatch': [
          { guard: 'isPastWhatIHold', target: 'healing' },
          { guard: 'takesDispatch', actions: [{ type: 'dropOlderWork', params: { inFlight: false } }, 'queueDispatch'] },
          { actions: 'reject' },
        ],
        // a peer already on a later step or attempt: held for when that dispatch comes; a late copy of a prepared step's: counted
        'tensors.received': { actions: { type: 'takeTensors', params: { where: 'idle' } } },
        'tensor.received': { actions: { type: 'takeTensors', params: { where: 'idle' } } },
        'tensor.request': [{ guard: 'requestForPrepared', actions: 'answerRequest' }, { actions: 'reject' }],
        'tensor.conflict': [{ guard: 'conflictForLater', actions: 'dropEarlyCopy' }, { actions: 'reject' }],
        'host.commit': [
          ...onCommit,
          // restarted, and told of a step past what it holds (see isPastWhatIHold): heal again, then confirm the resent commit
          { guard: 'isPastWhatIHold', target: 'healing' },
          { actions: 'reject' },
        ],
        'host.abort': [
          { guard: 'abortDropsPrepared', actions: [{ type: 'dropAborted', params: { inFlight: false } }, 'confirmAborted'] },
          { guard: 'isAbortOfUncommitted', actions: 'confirmAborted' },
          { actions: 'reject' },
        ],
        'clock.tick': onTick,
      },
    },
    /** One step attempt, phase by phase; prepared steps before it await their commits meanwhile (`pending`). */
    attempt: {
      initial: 'forward',
      on: {
        // a collective's least time is over (modeled compute; see startPhaseFloor)
        'xstate.done.actor.phaseFloor': { actions: 'notePhaseTimeOver' },
        // this attempt's are stored; a peer already on a later step or attempt: kept for when that dispatch comes
        'tensors.received': { actions: { type: 'takeTensors', params: { where: 'attempt' } } },
        'tensor.received': { actions: { type: 'takeTensors', params: { where: 'attempt' } } },
        // the abort of this attempt, or of a step before it (prepared here, not committed): everything from there on goes
        'host.abort': [
          { guard: 'abortDropsInFlight', target: 'idle', actions: [{ type: 'dropAborted', params: { inFlight: true } }, 'confirmAborted'] },
          { guard: 'isAbortOfUncommitted', actions: 'confirmAborted' },
          { actions: 'reject' },
        ],
        'host.commit': [...onCommit, { actions: 'reject' }],
        'tensor.request': [
          { guard: 'forThisAttempt', actions: 'answerRequest' },
          { guard: 'requestForPrepared', actions: 'answerRequest' },
          { actions: 'reject' },
        ],
        // two copies of a tensor of this attempt differ: one is forged, and which cannot be told; fail the attempt, named
        'tensor.conflict': [
          { guard: 'conflictForThisAttempt', target: '.failed', actions: 'failConflict' },
          { guard: 'conflictForLater', actions: 'dropEarlyCopy' },
          { actions: 'reject' },
        ],
        // a newer attempt supersedes this one (and any prepared step of an older one): nothing of them was committed
        'host.dispatch': [
          { guard: 'dispatchDropsWork', target: 'idle', actions: [{ type: 'dropOlderWork', params: { inFlight: true } }, 'queueDispatch'] },
          { guard: 'takesDispatch', actions: 'queueDispatch' },
          { actions: 'reject' },
        ],
        'clock.tick': onTick,
      },
      states: {
        forward: {
          tags: ['compute'],
          entry: { type: 'enterPhase', params: { phase: 'forward' } },
          invoke: {
            src: 'forwardPass',
            input: ({ context: c }) => ({
              model: c.topology.model,
              params: base(c).params,
              task: c.task,
              step: c.step,
              samples: c.samples,
              globalBatch: c.topology.training.globalBatch,
            }),
            onDone: { target: 'backward', actions: 'storeActivations' },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'forward' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'forward' } } } },
        },
        backward: {
          tags: ['compute'],
          entry: { type: 'enterPhase', params: { phase: 'backward' } },
          invoke: {
            src: 'backwardPass',
            input: ({ context: c }) => ({
              model: c.topology.model,
              params: base(c).params,
              acts: c.acts!,
              globalBatch: c.topology.training.globalBatch,
            }),
            onDone: { target: 'reduceScatter', actions: ['storeGradient', { type: 'sendInPod', params: { tensor: 'grad.slice' } }] },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'backward' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'backward' } } } },
        },
        reduceScatter: {
          tags: ['awaitsTensors'],
          // with modeled compute, the collective also lasts its modeled time (`phaseFloorMs`): it ends at max(tensors in, that);
          // tensors in sooner wait out the rest on `phaseFloor`
          exit: 'stopPhaseFloor',
          entry: { type: 'enterPhase', params: { phase: 'reduceScatter' } },
          always: [
            // chain collectives: add this host's gradient to the running sum once the host before's is here, pass it on
            { guard: 'extendsSum', actions: 'extendSum' },
            { guard: and(['haveAllSlices', 'phaseTimeOver']), target: 'exchange', actions: 'reduceInPod' },
            { guard: and(['haveAllSlices', not('phaseFloorWaiting')]), actions: 'startPhaseFloor' },
          ],
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'reduceScatter' } } } },
          // a tensor lost on the way is asked for again, not waited for until the deadline
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        exchange: {
          tags: ['awaitsTensors'],
          // with modeled compute, the collective also lasts its modeled time (`phaseFloorMs`): it ends at max(tensors in, that);
          // tensors in sooner wait out the rest on `phaseFloor`
          exit: 'stopPhaseFloor',
          entry: [
            { type: 'enterPhase', params: { phase: 'exchange' } },
            { type: 'sendTensors', params: { tensor: 'grad.exchange' } },
          ],
          always: [
            { guard: and(['haveAllExchanged', 'phaseTimeOver']), target: 'update' },
            { guard: and(['haveAllExchanged', not('phaseFloorWaiting')]), actions: 'startPhaseFloor' },
          ],
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'exchange' } } } },
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        update: {
          tags: ['compute'],
          entry: { type: 'enterPhase', params: { phase: 'update' } },
          invoke: {
            src: 'applyUpdate',
            input: ({ context: c }) => {
              const own = c.ranges[c.host];
              const podGrads = Array.from({ length: c.topology.pods }, (_, q) => (q === c.pod ? c.podGrad! : c.exchanged.get(q)!));
              const b = base(c);
              return {
                optimizer: c.topology.training.optimizer,
                step: c.step,
                shard: b.params.subarray(own.start, own.end),
                state: b.optState,
                podGrads,
              };
            },
            onDone: { target: 'allGather', actions: ['storeUpdate', { type: 'sendInPod', params: { tensor: 'param.shard' } }] },
            onError: { target: 'failed', actions: { type: 'failFromError', params: { phase: 'update' } } },
          },
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'update' } } } },
        },
        allGather: {
          tags: ['awaitsTensors'],
          // with modeled compute, the collective also lasts its modeled time (`phaseFloorMs`): it ends at max(tensors in, that);
          // tensors in sooner wait out the rest on `phaseFloor`
          exit: 'stopPhaseFloor',
          entry: { type: 'enterPhase', params: { phase: 'allGather' } },
          always: [
            // chain collectives: append this host's new shard to the prefix once the host before's is here, pass it on
            { guard: 'extendsPrefix', actions: 'extendPrefix' },
            { guard: and(['haveAllGathered', 'phaseTimeOver']), target: 'prepared', actions: 'assembleParams' },
            { guard: and(['haveAllGathered', not('phaseFloorWaiting')]), actions: 'startPhaseFloor' },
          ],
          after: { phaseDeadline: { target: 'failed', actions: { type: 'fail', params: { phase: 'allGather' } } } },
          initial: 'waiting',
          states: { waiting: { after: { requestDelay: { target: 'waiting', reenter: true, actions: 'requestMissing' } } } },
        },
        /**
         * The new parameters are here: the step awaits its commit (`pending`, reported now and every heartbeat
         * interval until then), and the host goes on at once to the next step, on these parameters.
         */
        prepared: {
          entry: [{ type: 'enterPhase', params: { phase: 'prepared' } }, 'prepare'],
          always: { target: '#host.idle', actions: 'moveToNextStep' },
        },
        /** Waits for the pod's abort; the committed parameters are untouched (prepared steps before it still commit). */
        failed: {
          entry: [{ type: 'enterPhase', params: { phase: 'failed' } }, 'sendFailed'],
          on: {
            'tensor.conflict': [
              { guard: 'conflictForThisAttempt', actions: 'reject' },
              { guard: 'conflictForLater', actions: 'dropEarlyCopy' },
              { actions: 'reject' },
            ],
          },
        },
      },
    },
    /** The run ended: report rejections; the adapter flushes and exits. */
    stopped: {
      entry: [{ type: 'enterPhase', params: { phase: 'stopped' } }, 'sendStopped'],
      on: { 'clock.tick': {}, 'state.request': {} },
    },
  },
});
