import { describe, expect, it } from 'vitest';
import { parseTopology, preset, type Topology } from '@lockstep/topology';
import { launch, runReference, type StepLine } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

async function trainAndCompare(t: Topology, steps: number) {
  const seen: StepLine[] = [];
  const result = await launch({ topology: t, steps, runDir: tempDir(), log: quietLog, onStep: (s) => seen.push(s) });
  const ref = runReference(t, steps);
  return { result, ref, seen };
}

describe('training in separate OS processes over a NATS cluster', () => {
  it('demo (2 pods x 4 hosts, 11 processes) matches the single-process reference bitwise at every step', async () => {
    const { result, ref, seen } = await trainAndCompare(preset('demo'), 30);
    expect(result.processes).toBe(11);
    expect(seen.map((s) => s.step)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    for (const s of seen) {
      expect(s.podHashes).toEqual([ref.hashes[s.step], ref.hashes[s.step]]);
      expect(s.podsAgree).toBe(true);
    }
    expect(result.paramsHash).toBe(ref.paramsHash);
    expect(result.pods.map((p) => p.paramsHash)).toEqual([ref.paramsHash, ref.paramsHash]);
    expect(result.podsIdenticalEveryStep).toBe(true);
    expect(result.loss.first).toBe(ref.loss.first);
    expect(result.loss.last).toBe(ref.loss.last);
    expect(result.loss.last!).toBeLessThan(result.loss.first! / 4);
    expect(result.rejectedTotal).toBe(0);
    // two steps in flight (the default): Little's law over the steps' times from dispatch to commit
    expect(result.dispatchDepth).toBe(2);
    expect(result.meanStepsInFlight).toBeGreaterThan(1.2);
  }, 180_000);

  it('one step in flight and four give the same bits at every step as the reference (and as two, above)', async () => {
    for (const depth of [1, 4]) {
      const { result, ref, seen } = await trainAndCompare(parseTopology({ ...preset('tiny'), dispatch: { depth } }), 16);
      expect(result.dispatchDepth).toBe(depth);
      expect(seen.map((s) => s.step)).toEqual(Array.from({ length: 16 }, (_, i) => i));
      for (const s of seen) expect(s.podHashes).toEqual([ref.hashes[s.step], ref.hashes[s.step]]);
      expect(result.paramsHash).toBe(ref.paramsHash);
      expect(result.rejectedTotal).toBe(0);
      if (depth === 1) expect(result.meanStepsInFlight).toBeLessThanOrEqual(1.01);
      else expect(result.meanStepsInFlight).toBeGreaterThan(1.2);
    }
  }, 240_000);

  it('1 pod and 3 pods match their references', async () => {
    for (const pods of [1, 3]) {
      const t = parseTopology({
        ...preset('tiny'),
        name: `pods-${pods}`,
        pods,
        training: { ...preset('tiny').training, globalBatch: 12 * pods },
      });
      const { result, ref } = await trainAndCompare(t, 12);
      expect(result.pods.length).toBe(pods);
      expect(result.paramsHash).toBe(ref.paramsHash);
      expect(new Set(result.pods.map((p) => p.paramsHash))).toEqual(new Set([ref.paramsHash]));
    }
  }, 180_000);

  it('a gradient larger than NATS max_payload, in 64 KiB chunks, with hosts grouped two to a process, matches the reference', async () => {
    const t = parseTopology({
      ...preset('tiny'),
      name: 'chunked',
      model: { inputDim: 128, hiddenDim: 1024, outputDim: 128 },
      hostsPerProcess: 2,
      wire: { chunkBytes: 65536, maxControlBytes: 65536 },
    });
    const { result, ref } = await trainAndCompare(t, 4);
    expect(result.processes).toBe(5); // 2 pods + 2 host processes + client
    expect(result.paramsHash).toBe(ref.paramsHash);
  }, 180_000);

  it('larger pods, hosts grouped into processes that batch their in-pod messages, match the reference at every step, one and two steps in flight', async () => {
    // 2 x 16 hosts 4 a process and 2 x 32 hosts 8 a process: in-pod tensors cross processes in batch frames
    for (const [hostsPerPod, hostsPerProcess, depth] of [
      [16, 4, 1],
      [16, 4, 2],
      [32, 8, 2],
    ] as const) {
      const base = preset('demo');
      const t = parseTopology({
        ...base,
        name: `batched-${hostsPerPod}`,
        hostsPerPod,
        hostsPerProcess,
        training: { ...base.training, globalBatch: 4 * hostsPerPod },
        dispatch: { depth },
      });
      const { result, ref, seen } = await trainAndCompare(t, 6);
      expect(result.processes).toBe(2 * (hostsPerPod / hostsPerProcess) + 3);
      expect(seen.map((s) => s.step)).toEqual([0, 1, 2, 3, 4, 5]);
      for (const s of seen) expect(s.podHashes).toEqual([ref.hashes[s.step], ref.hashes[s.step]]);
      expect(result.paramsHash).toBe(ref.paramsHash);
      expect(result.rejectedTotal).toBe(0);
    }
  }, 300_000);
});
