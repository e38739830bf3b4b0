import type { NatsConnection } from '@nats-io/transport-node';
import { createActor, toPromise } from 'xstate';
import {
  actorNames,
  describeFailure,
  encodeControl,
  subjects,
  toMicros,
  type RunLogRecord,
  type StepCommitted,
  type Topology,
} from '@lockstep/topology';
import type { Logger } from 'pino';
import { edgeFor, natsTransport } from '../wire/edge.ts';
import { listenFor } from '../wire/listen.ts';
import { systemClock, ticker } from '../clock.ts';
import { processIncarnation } from '../rejects.ts';
import { inspectors, recorder } from '../record.ts';
import { clientCheckpoints, newEntries, phaseSlices, rejectionBursts, retryEvent, type EventSink } from '../events.ts';
import { checkpointActor } from '../checkpoint/actors.ts';
import { clientMachine, type ClientOutput, type StepRecord } from './client.machine.ts';
import { runLogActor, type RunLog } from './runlog.ts';

export interface ClientRunOptions {
  nc: NatsConnection;
  topology: Topology;
  runId: string;
  steps: number;
  firstStep?: number;
  /** The run's durable log of committed steps. */
  runLog: RunLog;
  /** A restarted client: the log's last record, whose commit it finishes first. */
  resume?: RunLogRecord;
  /** With resume: a fresh cluster (train --resume) that must restore a checkpoint and replay first. */
  cold?: boolean;
  /** Where hosts write checkpoints and the client their manifests. */
  checkpointDir: string;
  log: Logger;
  /** Record every event the machine takes and every message it sends here, for `lockstep replay`. */
  recordDir?: string;
  /** While the client waits for the pods to say all their hosts are up: how many have. */
  onReadyProgress?: (reached: number, total: number) => void;
  onStep?: (record: StepRecord) => void;
  /** Each checkpoint manifest written (no `error`) or not written (`error`: why). */
  onCheckpoint?: (step: number, error?: string) => void;
  /** Where the client's run events go (its phase slices, retried attempts, restores, checkpoints, rejection bursts). */
  events?: EventSink;
}

/** Run the client machine to its end (it starts once every pod is ready) and return its summary. */
export async function runClient(opts: ClientRunOptions): Promise<ClientOutput> {
  const { nc, topology: t, runId } = opts;
  const log = opts.log.child({ actor: actorNames.client });
  const clock = systemClock;
  const wire = edgeFor(t, 'client', {
    transport: natsTransport(nc, log),
    clock,
    runId,
    log,
    listen: listenFor(t, runId, { role: 'client' }),
  });
  const input = {
    topology: t,
    runId,
    incarnation: processIncarnation(),
    steps: opts.steps,
    firstStep: opts.firstStep,
    resume: opts.resume,
    cold: opts.cold,
    now: clock.now(),
  };
  const rec = opts.recordDir ? recorder(opts.recordDir, actorNames.client, input) : undefined;
  const actor = createActor(
    clientMachine.provide({
      actors: {
        wire,
        clock: ticker(clock),
        runlog: runLogActor(opts.runLog, clock),
        checkpoints: checkpointActor({ dir: opts.checkpointDir, topology: t, runId, log, clock, onManifest: opts.onCheckpoint }),
      },
    }),
    { input, clock, inspect: inspectors(rec?.inspect, opts.events ? clientCheckpoints(opts.events, clock) : undefined) },
  );
  const ev = opts.events;
  const slices = ev ? phaseSlices(ev, actorNames.client, clock, ['stopped']) : undefined;
  const bursts = ev ? rejectionBursts(ev, actorNames.client, clock) : undefined;
  const retriedNow = newEntries<ClientOutput['retried'][number]>((r) => ev?.emit(retryEvent(r, clock.now())));
  const restoredNow = newEntries<ClientOutput['restores'][number]>((r) =>
    ev?.emit({ kind: 'restore', actor: actorNames.client, at: toMicros(clock.now()), atStep: r.atStep, checkpoint: r.checkpoint }),
  );
  actor.on('step.committed', (r) => {
    log.info(
      { step: r.step, loss: r.loss, paramsHash: r.paramsHash, podsAgree: r.podsAgree, ms: Math.round(r.ms * 100) / 100 },
      'step committed',
    );
    const progress: StepCommitted = {
      v: 1,
      runId,
      step: r.step,
      attempt: r.attempt,
      sender: actorNames.client,
      msgId: `client/step.committed/${r.step}/${r.attempt}`,
      kind: 'step.committed',
      loss: r.loss,
      paramsHash: r.paramsHash,
      podsAgree: r.podsAgree,
      ms: r.ms,
    };
    nc.publish(subjects.progress(runId), encodeControl(progress));
    opts.onStep?.(r);
  });
  let retries = 0;
  let reached = -1;
  actor.subscribe((s) => {
    if (ev) {
      slices?.(s.context);
      bursts?.note(s.context.rejected);
      retriedNow(s.context.retried);
      restoredNow(s.context.restores);
    }
    if (reached < t.pods) {
      const c = s.context;
      const now = c.phase === 'joining' ? c.podReady.filter((r, p) => r && c.heardSinceWait[p]).length : t.pods;
      if (now !== reached) opts.onReadyProgress?.(now, t.pods);
      if (now === t.pods) log.info({ pods: t.pods, hostsPerPod: t.hostsPerPod, steps: opts.steps }, 'all pods ready; training');
      reached = now;
    }
    for (const r of s.context.retried.slice(retries))
      log.warn({ step: r.step, attempt: r.attempt, cause: r.cause }, `attempt failed; retrying: ${describeFailure(r)}`);
    retries = s.context.retried.length;
  });
  const output = toPromise(actor);
  actor.start();
  try {
    return await output;
  } finally {
    await nc.flush().catch(() => {});
    bursts?.flush();
    actor.stop();
    rec?.close();
  }
}
