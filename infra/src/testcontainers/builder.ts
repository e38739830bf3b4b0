import type { Topology } from '@lockstep/topology';
import { type ClusterOptions, type StartedLockstepCluster, startLockstepCluster } from './cluster.ts';

/**
 * A lockstep cluster to start in containers, shaped like a testcontainers
 * module: configure with `with…` calls, then `start()` gives the running
 * cluster, whose `stop()` (or `await using`, `Symbol.asyncDispose`) removes
 * every container and network it made.
 *
 *   const cluster = await new LockstepCluster('tiny').withSteps(40).withHeldClient().start();
 *   try {
 *     await cluster.startClient();
 *     await cluster.untilStep(5);
 *     await cluster.faults.kill('host/0/1');   // as a scenario names it
 *     await cluster.faults.start('host/0/1');  // it rejoins and heals from host/1/1
 *     const { exitCode, summary } = await cluster.waitForClient();
 *   } finally {
 *     await cluster.stop();
 *   }
 *
 * The options are checked by `start()` (InvalidInput names a bad one).
 */
export class LockstepCluster {
  private options: ClusterOptions;

  /** `topology`: a preset name (tiny, demo) or a Topology object (parseTopology); default tiny, 20 steps. */
  constructor(topology: string | Topology = 'tiny') {
    this.options = { topology, steps: 20 };
  }

  /** Steps the client runs (1 to 1,000,000). */
  withSteps(steps: number): this {
    this.options.steps = steps;
    return this;
  }

  /** The run's id (its NATS subjects are lockstep.<runId>.…); default `tc`. */
  withRunId(runId: string): this {
    this.options.runId = runId;
    return this;
  }

  /** The role image and the nats-server image (default $LOCKSTEP_IMAGE and $LOCKSTEP_NATS_IMAGE, else lockstep:dev and lockstep-nats:2.9.10, as `buildImages` tags them). */
  withImages(images: { image?: string; natsImage?: string }): this {
    this.options = { ...this.options, ...images };
    return this;
  }

  /** Keep the run's record (summary.json, steps.jsonl, events.jsonl, trace.json) in `dir` on this machine, written as the run goes. */
  withRecordDir(dir: string): this {
    this.options.recordDir = dir;
    return this;
  }

  /** Start every container but the client: call `startClient()` on the started cluster (after subscribing, say). */
  withHeldClient(): this {
    this.options.holdClient = true;
    return this;
  }

  /** Start the cluster's containers (see `startLockstepCluster`). */
  start(): Promise<StartedLockstepCluster> {
    return startLockstepCluster({ ...this.options });
  }
}
