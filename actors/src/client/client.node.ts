import type { NatsConnection } from '@nats-io/transport-node';
import { createActor, toPromise } from 'xstate';
import { actorNames, encodeControl, subjects, type RunLogRecord, type StepCommitted, type Topology } from '@lockstep/topology';
import type { Logger } from 'pino';
import { waitForPeers } from '../readiness.ts';
import { edgeFor } from '../wire/edge.ts';
import { clientMachine, type ClientOutput, type StepRecord } from './client.machine.ts';
import { runLogActor, type RunLog } from './runlog.ts';
import { writeManifest } from '../checkpoint/store.ts';
import { checkpointActor } from './checkpoints.ts';

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
  onReadyProgress?: (reached: number, total: number) => void;
  onStep?: (record: StepRecord) => void;
}

/** Wait for every pod to be ready, run the client machine to its end, and return its summary. */
export async function runClient(opts: ClientRunOptions): Promise<ClientOutput> {
  const { nc, topology: t, runId } = opts;
  const log = opts.log.child({ actor: actorNames.client });
  const pods = Array.from({ length: t.pods }, (_, p) => ({ name: actorNames.pod(p), subject: subjects.podPing(runId, p) }));
  await waitForPeers(nc, {
    runId,
    me: actorNames.client,
    peers: pods,
    deadlineMs: t.deadlines.startupMs,
    needReady: true,
    log,
    onProgress: opts.onReadyProgress,
  });
  log.info({ pods: t.pods, hostsPerPod: t.hostsPerPod, steps: opts.steps }, 'all pods ready; training');

  const wire = edgeFor(t, 'client', {
    nc,
    runId,
    log,
    listen: [{ subject: subjects.clientReport(runId), channel: { on: 'client.report', pods: t.pods } }],
  });
  const actor = createActor(
    clientMachine.provide({
      actors: { wire, runlog: runLogActor(opts.runLog), checkpoints: checkpointActor(opts.checkpointDir, t, runId, log) },
    }),
    {
      input: { topology: t, runId, steps: opts.steps, firstStep: opts.firstStep, resume: opts.resume, cold: opts.cold },
    },
  );
  actor.on('step.committed', (r) => {
    // every `everySteps`-th step: the manifest of the checkpoint the hosts write after committing it
    if ((r.step + 1) % t.checkpoint.everySteps === 0 && r.shardHashes.length === t.hostsPerPod) {
      try {
        writeManifest(
          opts.checkpointDir,
          {
            format: 'lockstep-checkpoint/1',
            runId,
            step: r.step,
            attempt: r.attempt,
            paramsHash: r.paramsHash,
            shardHashes: r.shardHashes,
            pods: t.pods,
            writtenAt: new Date().toISOString(),
          },
          t.checkpoint.keep,
        );
      } catch (err) {
        log.error({ err, step: r.step }, 'checkpoint manifest not written');
      }
    }
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
  actor.subscribe((s) => {
    for (const r of s.context.retried.slice(retries))
      log.warn({ step: r.step, attempt: r.attempt, reason: r.reason }, 'attempt failed; retrying');
    retries = s.context.retried.length;
  });
  const output = toPromise(actor);
  actor.start();
  try {
    return await output;
  } finally {
    await nc.flush().catch(() => {});
    actor.stop();
  }
}
