import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tempDir } from './helpers.ts';

describe('lockstep costmodel', () => {
  it('--json prints the modeled figures of palm-540b, fractions as fractions and bytes in bytes', () => {
    const r = cli(['costmodel', '--json']);
    expect(r.code).toBe(0);
    const modeled = r.json!.modeled as Record<string, number>;
    expect(Object.keys(modeled).sort()).toEqual(
      ['bytesPerHostPair', 'burstSeconds', 'burstTbps', 'hfu', 'mfu', 'stepSeconds', 'tokensPerSecond', 'twoPodScaling'].sort(),
    );
    expect(modeled.mfu).toBeGreaterThan(0);
    expect(modeled.hfu).toBeLessThan(1);
    expect(modeled.mfu).toBeLessThan(modeled.hfu!);
    expect(modeled.bytesPerHostPair).toBeGreaterThan(1e9); // bytes, not GB
    expect(modeled.tokensPerSecond).toBeCloseTo((2048 * 2048) / modeled.stepSeconds!, 6);
    expect(r.json!.topology).toBe('palm-540b');
  });

  it('--overlap-backward shortens the step and raises the two-pod scaling', () => {
    const plain = cli(['costmodel', '--json']).json!.modeled as Record<string, number>;
    const overlapped = cli(['costmodel', '--overlap-backward', '--json']).json!.modeled as Record<string, number>;
    expect(overlapped.stepSeconds).toBeLessThan(plain.stepSeconds!);
    expect(overlapped.twoPodScaling).toBeGreaterThan(plain.twoPodScaling!);
    expect(overlapped.burstSeconds).toBe(plain.burstSeconds); // the same transfer, hidden behind backward
  });

  it("a topology's exchange.overlapBackward overlaps as the flag does; a modeled pod bigger than the run's gives the full system", () => {
    const root = join(import.meta.dirname, '..', '..', 'topologies');
    const flag = cli(['costmodel', '--overlap-backward', '--json']).json!;
    const file = cli(['costmodel', '-t', join(root, 'palm-540b-8-overlap.yaml'), '--json']).json!;
    expect(file.overlapBackward).toBe(true);
    expect(file.modeled).toEqual(flag.modeled);
    // 2 pods x 4 run hosts modeling 768-host pods: palm-540b's figures
    expect(cli(['costmodel', '-t', join(root, 'palm-540b-8.yaml'), '--json']).json!.modeled).toEqual(
      cli(['costmodel', '--json']).json!.modeled,
    );
  });

  it("prints the paper's figures beside the modeled ones with the difference in percent", () => {
    const r = cli(['costmodel']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tokens\/s\s+\d+\.\dK\s+238\.3K\s+[+-]\d+\.\d%/);
    expect(r.stdout).toMatch(/two-pod scaling\s+1\.\d{3}x .*1\.95x \(97%\)/);
    expect(r.stdout).toMatch(/overlapBackward true: step/);
    expect(cli(['costmodel', '--overlap-backward']).stdout).toMatch(/exchange overlapped with backward[\s\S]*overlapBackward false: step/);
  });

  it('a topology overriding a cost model input is used; a bad override exits 2 naming the field', () => {
    const dir = tempDir();
    const topology = (modeled: string) =>
      `name: big\npods: 2\nhostsPerPod: 768\nmodel: {inputDim: 32, hiddenDim: 64, outputDim: 8}\ntraining: {seed: 1, globalBatch: 3072, optimizer: {kind: adam, lr: 0.01}}\ncompute: {modeled: ${modeled}}\n`;
    const slow = join(dir, 'slow.yaml');
    writeFileSync(slow, topology('{dcnGbitPerHost: 1}'));
    const r = cli(['costmodel', '--topology', slow, '--json']);
    expect(r.code).toBe(0);
    expect((r.json!.modeled as { burstTbps: number }).burstTbps).toBeCloseTo(1.536, 9); // 1536 hosts x 1 Gbit/s
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, topology('{computeEfficiency: 0}'));
    const b = cli(['costmodel', '--topology', bad]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/compute\.modeled\.computeEfficiency: must be > 0/);
    expect(b.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("a topology the model cannot lay PaLM's batch on exits 2 naming the input", () => {
    const file = join(tempDir(), 'three-pods.yaml');
    writeFileSync(file, 'pods: 3\nhostsPerPod: 2\ntraining: {globalBatch: 60}\n');
    const r = cli(['costmodel', '--topology', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cost model inputs of .*three-pods\.yaml[\s\S]*sequencesPerStep: must be divisible by pods \(3\)/);
  });
});
