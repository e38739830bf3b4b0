import { mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkpointDirName,
  combineShardHashes,
  initOptimizerState,
  initParams,
  parameterCount,
  parseTopology,
  preset,
  shardFileName,
  shardHash,
  shardRange,
} from '@lockstep/topology';
import { findCheckpoint, loadCheckpoint, writeManifest, writeShardCheckpoint } from '../src/index.ts';

const t = parseTopology({ ...preset('tiny'), checkpoint: { everySteps: 10, keep: 2 } });
const RUN = 'ckpt-test';
const size = parameterCount(t.model);

/** A checkpoint of `step` as every host of every pod writes it, with the client's manifest; params scaled by `k` so steps differ. */
function writeCheckpoint(dir: string, step: number, k: number) {
  const params = initParams(t.model, t.training.seed).map((x) => x * k);
  const shardHashes: string[] = [];
  for (let h = 0; h < t.hostsPerPod; h++) {
    const r = shardRange(size, t.hostsPerPod, h);
    const shard = params.subarray(r.start, r.end);
    shardHashes.push(shardHash(shard));
    const opt = initOptimizerState(t.training.optimizer, r.end - r.start).map((o) => o.fill(k));
    for (let pod = 0; pod < t.pods; pod++) writeShardCheckpoint(dir, { runId: RUN, step, pod, host: h, shard, opt });
  }
  writeManifest(
    dir,
    {
      format: 'lockstep-checkpoint/1',
      runId: RUN,
      step,
      attempt: 1,
      paramsHash: combineShardHashes(shardHashes),
      shardHashes,
      pods: t.pods,
      writtenAt: 'now',
    },
    t.checkpoint.keep,
  );
  return { params, paramsHash: combineShardHashes(shardHashes) };
}

describe('checkpoints on disk', () => {
  it('a host restores every shard of the newest checkpoint, and its own optimizer state', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-ckpt-'));
    writeCheckpoint(dir, 9, 2);
    const { params } = writeCheckpoint(dir, 19, 3);
    const s = loadCheckpoint(dir, t, RUN, 1, 19);
    expect(s.step).toBe(20);
    expect(Buffer.from(s.params.buffer).equals(Buffer.from(params.buffer))).toBe(true);
    expect(Array.from(s.optState[0].subarray(0, 3))).toEqual([3, 3, 3]);
    expect(s.lastCommitted).toMatchObject({ step: 19, attempt: 1 });
    expect(readdirSync(dir).filter((n) => n.startsWith('step-')).length).toBe(2);
    expect(readdirSync(join(dir, checkpointDirName(19))).some((n) => n.includes('.tmp-'))).toBe(false);
  });

  it('one torn replica is covered by the other pod; every replica torn makes the previous checkpoint the one used', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-ckpt-'));
    writeCheckpoint(dir, 9, 2);
    writeCheckpoint(dir, 19, 3);
    const f = (pod: number) => join(dir, checkpointDirName(19), shardFileName(pod, 0));
    truncateSync(f(0), Math.floor(statSync(f(0)).size / 2));
    let c = findCheckpoint(dir, t, RUN, 100);
    expect('manifest' in c && c.manifest.step).toBe(19);
    const bytes = readFileSync(f(1));
    bytes[bytes.length - 1] ^= 0xff; // a flipped bit: the checksum catches it
    writeFileSync(f(1), bytes);
    c = findCheckpoint(dir, t, RUN, 100);
    expect('manifest' in c && c.manifest.step).toBe(9);
    expect(c.skipped).toEqual([
      {
        step: 19,
        reason: expect.stringMatching(/shard 0: no valid replica \(pod 0: .*torn.*; pod 1: payload checksum mismatch \(corrupted\)\)/),
      },
    ]);
    expect(() => loadCheckpoint(dir, t, RUN, 0, 19)).toThrow(/checkpoint of step 19 is not usable: shard 0/);
  });

  it('a corrupt manifest, or one whose shard hashes do not give its paramsHash, is skipped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-ckpt-'));
    writeCheckpoint(dir, 9, 2);
    writeCheckpoint(dir, 19, 3);
    writeFileSync(join(dir, checkpointDirName(19), 'manifest.json'), '{"format": "lockstep-checkpoint/1", "runId": ');
    const c = findCheckpoint(dir, t, RUN, 100);
    expect('manifest' in c && c.manifest.step).toBe(9);
    expect(c.skipped[0]).toMatchObject({ step: 19, reason: expect.stringMatching(/^manifest unreadable/) });
  });

  it('no usable checkpoint: restoring goes back to the initial state', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-ckpt-'));
    expect('manifest' in findCheckpoint(dir, t, RUN, 100)).toBe(false);
    const s = loadCheckpoint(dir, t, RUN, 0, -1);
    expect(s.step).toBe(0);
    expect(shardHash(s.params)).toBe(shardHash(initParams(t.model, t.training.seed)));
  });
});
