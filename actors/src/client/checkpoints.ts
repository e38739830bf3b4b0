import type { Logger } from 'pino';
import { fromCallback } from 'xstate';
import type { Topology } from '@lockstep/topology';
import { findCheckpoint } from '../checkpoint/store.ts';
import type { CheckpointCommand, CheckpointEvent } from './client.machine.ts';

/** The client machine's `checkpoints` actor: finds the newest usable checkpoint on disk. */
export function checkpointActor(dir: string, t: Topology, runId: string, log: Logger) {
  return fromCallback<CheckpointCommand>(({ receive, sendBack }) => {
    receive((cmd) => {
      const r = findCheckpoint(dir, t, runId, cmd.atMost);
      for (const s of r.skipped) log.warn({ step: s.step, reason: s.reason }, 'checkpoint skipped');
      if ('manifest' in r) {
        log.warn({ step: r.manifest.step }, 'restoring checkpoint');
        sendBack({
          type: 'ckpt.found',
          step: r.manifest.step,
          paramsHash: r.manifest.paramsHash,
          skipped: r.skipped,
        } satisfies CheckpointEvent);
      } else {
        log.warn('no usable checkpoint: restoring the initial state');
        sendBack({ type: 'ckpt.none', skipped: r.skipped } satisfies CheckpointEvent);
      }
    });
  });
}
