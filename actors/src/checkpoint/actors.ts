import type { Logger } from 'pino';
import { fromCallback, fromPromise } from 'xstate';
import type { Topology } from '@lockstep/topology';
import type { RunClock } from '../clock.ts';
import { findCheckpoint, loadCheckpoint, realDisk, writeManifest, writeShardCheckpoint, type Disk } from './store.ts';
import type { CommittedState } from '../host/heal.ts';
import type { HostDiskCommand } from '../host/host.setup.ts';
import type { CheckpointCommand, CheckpointEvent } from '../client/client.machine.ts';

/** Where a run's checkpoints are, and on what disk. */
export interface CheckpointPlace {
  dir: string;
  topology: Topology;
  runId: string;
  log: Logger;
  clock: RunClock;
  disk?: Disk;
  /** Told of every checkpoint manifest the client writes, or fails to write (`error`: why). */
  onManifest?: (step: number, error?: string) => void;
}

/** The client machine's `checkpoints` actor: finds the newest usable checkpoint, and writes each checkpoint's manifest. */
export function checkpointActor(o: CheckpointPlace) {
  const disk = o.disk ?? realDisk;
  return fromCallback<CheckpointCommand>(({ receive, sendBack }) => {
    receive((cmd) => {
      if (cmd.type === 'ckpt.writeManifest') {
        try {
          writeManifest(o.dir, { ...cmd.manifest, writtenAt: new Date(o.clock.now()).toISOString() }, o.topology.checkpoint.keep, disk);
          o.onManifest?.(cmd.manifest.step);
        } catch (err) {
          o.log.error({ err, step: cmd.manifest.step }, 'checkpoint manifest not written');
          o.onManifest?.(cmd.manifest.step, (err as Error).message);
        }
        return;
      }
      const r = findCheckpoint(o.dir, o.topology, o.runId, cmd.atMost, disk);
      for (const s of r.skipped) o.log.warn({ step: s.step, reason: s.reason }, 'checkpoint skipped');
      if ('manifest' in r) {
        o.log.warn({ step: r.manifest.step }, 'restoring checkpoint');
        sendBack({
          type: 'ckpt.found',
          step: r.manifest.step,
          paramsHash: r.manifest.paramsHash,
          skipped: r.skipped,
        } satisfies CheckpointEvent);
      } else {
        o.log.warn('no usable checkpoint: restoring the initial state');
        sendBack({ type: 'ckpt.none', skipped: r.skipped } satisfies CheckpointEvent);
      }
    });
  });
}

/** A host machine's `disk` actor: writes its part of each checkpoint. */
export function hostDiskActor(o: CheckpointPlace) {
  const disk = o.disk ?? realDisk;
  return fromCallback<HostDiskCommand>(({ receive }) => {
    receive((cmd) => {
      try {
        writeShardCheckpoint(o.dir, cmd, disk);
      } catch (err) {
        o.log.error({ err, step: cmd.step }, 'checkpoint not written');
      }
    });
  });
}

/** A host machine's `loadCheckpoint` actor: its committed state from the checkpoint of a step (-1: the initial state). */
export function checkpointLoader(o: CheckpointPlace, host: number) {
  const disk = o.disk ?? realDisk;
  return fromPromise<CommittedState, { checkpoint: number }>(async ({ input }) => {
    const s = loadCheckpoint(o.dir, o.topology, o.runId, host, input.checkpoint, disk);
    o.log.info({ checkpoint: input.checkpoint, step: s.step }, 'restored from checkpoint');
    return s;
  });
}
