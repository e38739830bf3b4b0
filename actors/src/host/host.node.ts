import { createActor, type ActorRefFrom } from 'xstate';
import { actorNames, hostPhaseFloorsMs, type CrashPoint } from '@lockstep/topology';
import { checkpointLoader, hostDiskActor } from '../checkpoint/actors.ts';
import { systemClock, ticker } from '../clock.ts';
import { untilStopped } from '../lifecycle.ts';
import { processIncarnation } from '../rejects.ts';
import { edgeFor, natsTransport, type Transport } from '../wire/edge.ts';
import { hostTensorLength, listenFor } from '../wire/listen.ts';
import type { HostAddress } from './address.ts';
import { crashInspector } from './crash.ts';
import { inspectors, recorder } from '../record.ts';
import { hostFlows, hostStepSlices, phaseSlices, rejectionBursts, type EventSink } from '../events.ts';
import { hostPhases, toMicros } from '@lockstep/topology';
import { hostCompute } from './host.actors.ts';
import { hostMachine } from './host.machine.ts';

export interface HostRun {
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
  /** Record every event the machine takes and every message it sends here, for `lockstep replay` (`train --record`). */
  recordDir?: string;
  /**
   * The process's wire (see ProcessWire): what one host of the process sends another goes through memory, what it
   * sends the other processes of its pod goes in batch frames. Absent: straight to NATS.
   */
  transport?: Transport;
  /** Where this host's run events go (phase slices, tensor flows, heals, rejection bursts): the launcher's record. */
  events?: EventSink;
}

const incarnation = processIncarnation();

/**
 * Connect one host machine to NATS: provide its edge, clock, compute and
 * checkpoint store. Everything the host says (joining, heartbeats, healing,
 * checkpoints) is its machine's.
 */
export function runHost(opts: HostRunOptions): HostRun {
  const { nc, topology: t, runId, pod, host } = opts;
  const me = actorNames.host(pod, host);
  const log = opts.log.child({ actor: me });
  const clock = systemClock;
  const place = { dir: opts.checkpointDir, topology: t, runId, log, clock };
  const wire = edgeFor(t, 'host', {
    transport: opts.transport ?? natsTransport(nc, log),
    clock,
    runId,
    log,
    expectedLength: hostTensorLength(t, host),
    listen: listenFor(t, runId, { role: 'host', pod, host }),
    // the step tensors one socket read or one in-process delivery round completes reach the machine as one event
    batchTensors: queueMicrotask,
    // a phase's tensors for hundreds of peers go out a slice a turn: the process keeps reading its socket meanwhile
    spreadSends: setImmediate,
  });
  const input = { topology: t, runId, pod, host, incarnation, heal: opts.heal, now: clock.now() };
  const rec = opts.recordDir ? recorder(opts.recordDir, me, input) : undefined;
  const ev = opts.events;
  const inspect = inspectors(opts.crashPoint?.host === host ? crashInspector(opts.crashPoint, log) : undefined, rec?.inspect);
  const flows = ev ? hostFlows(ev, me) : undefined;
  // step phases from the machine's phase times; the others (joining, prepared, healing, ...) from its snapshots
  const stepSlices = ev ? hostStepSlices(ev, me) : undefined;
  const otherSlices = ev ? phaseSlices(ev, me, clock, ['idle', 'stopped', ...hostPhases]) : undefined;
  const bursts = ev ? rejectionBursts(ev, me, clock) : undefined;
  let healingSince = 0;
  const actor: ActorRefFrom<typeof hostMachine> = createActor(
    hostMachine.provide({
      actors: {
        wire,
        clock: ticker(clock),
        disk: hostDiskActor(place),
        loadCheckpoint: checkpointLoader(place, host),
        ...hostCompute(clock, hostPhaseFloorsMs(t)),
      },
    }),
    { input, inspect, clock },
  );
  let lastPhase = '';
  actor.subscribe((s) => {
    const c = s.context;
    if (stepSlices) {
      const { leftAt, starts } = stepSlices(c);
      otherSlices?.({ phase: c.phase, step: c.step, attempt: c.attempt, since: c.phaseStartedAt, leftAt });
      flows?.(c, starts);
    }
    bursts?.note(c.rejected);
    if (c.phase === 'stopped') bursts?.flush();
    if (c.phase === lastPhase) return;
    if (c.phase === 'healing') healingSince = c.phaseStartedAt;
    if (lastPhase === 'joining') log.info({ peers: c.joined.map((q) => actorNames.host(q, host)) }, 'reached cross-pod peers');
    if (lastPhase === 'healing' && c.heal.from) {
      const bytes = c.params.byteLength + c.optState.reduce((n, x) => n + x.byteLength, 0);
      const ms = Math.max(0, c.phaseStartedAt - healingSince);
      log.info({ from: c.heal.from, step: c.step, lastCommitted: c.lastCommitted, bytes, ms }, 'healed from cross-pod peer');
      ev?.emit({
        kind: 'heal',
        actor: me,
        at: toMicros(c.phaseStartedAt),
        from: c.heal.from,
        step: c.lastCommitted?.step ?? -1,
        bytes,
        ms,
      });
    }
    if (c.phase === 'lost') log.warn({ failure: c.failure }, 'no replica to heal from: waiting for a checkpoint restore');
    lastPhase = c.phase;
    log.debug({ step: c.step, attempt: c.attempt, phase: c.phase }, 'phase');
  });
  // subscribe to errors before start, so nothing the actor throws goes unhandled
  const done = untilStopped(actor, { nc, log, name: 'host', cleanup: () => rec?.close() });
  actor.start();

  return { done, stop: () => actor.stop() };
}
