import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tempDir } from './helpers.ts';

describe('lockstep CLI', () => {
  it('train --json and reference --json print one JSON object last, with equal paramsHash', () => {
    const dir = tempDir();
    const train = cli(['train', '--topology', 'tiny', '--steps', '8', '--json', '--run-dir', join(dir, 'run')]);
    expect(train.code).toBe(0);
    const ref = cli(['reference', '--topology', 'tiny', '--steps', '8', '--json']);
    expect(ref.code).toBe(0);
    for (const r of [train.json!, ref.json!]) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['steps', 'paramsHash', 'pods', 'loss', 'stepsPerSecond']));
      expect(r.steps).toBe(8);
    }
    expect(train.json!.paramsHash).toBe(ref.json!.paramsHash);
    expect((train.json!.pods as { id: string; paramsHash: string }[]).map((p) => p.id)).toEqual(['pod/0', 'pod/1']);
    expect((ref.json!.pods as unknown[]).length).toBe(1);
  }, 120_000);

  it('an invalid topology file exits 2 naming the field and the reason', () => {
    const dir = tempDir();
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'name: bad\npods: 0\nhostsPerPod: 2\nmodel: {inputDim: 4, hiddenDim: 4, outputDim: 2}\ntraining: {seed: 1, globalBatch: 4, optimizer: {kind: adam, lr: 0.01}}\n',
    );
    const r = cli(['train', '--topology', file, '--steps', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pods: must be >= 1/);
  });

  it('bad flags exit 2 naming the flag', () => {
    const steps = cli(['reference', '--topology', 'tiny', '--steps', '0']);
    expect(steps.code).toBe(2);
    expect(steps.stderr).toMatch(/--steps: must be >= 1/);
    const preset = cli(['reference', '--topology', 'nope']);
    expect(preset.code).toBe(2);
    expect(preset.stderr).toMatch(/--topology: "nope" is neither a preset \(tiny, demo, palm-540b\) nor a readable file/);
    const model = cli(['reference', '--model', 'huge']);
    expect(model.code).toBe(2);
    expect(model.stderr).toMatch(/--model: must be one of small, medium, large/);
  });

  it('a bad environment variable for a role exits 2 naming it, before any connection is tried', () => {
    const role = [
      'host',
      '--run',
      'x',
      '--topology',
      'tiny',
      '--pod',
      '0',
      '--hosts',
      '0',
      '--nats',
      'nats://127.0.0.1:1',
      '--ckpt-dir',
      '/tmp',
    ];
    const delay = cli(role, { env: { LOCKSTEP_EXIT_DELAY_MS: 'soon' } });
    expect(delay.code).toBe(2);
    expect(delay.stderr).toMatch(/LOCKSTEP_EXIT_DELAY_MS: .*number/);
    const crash = cli(role, { env: { LOCKSTEP_CRASH_POINT: '{"host":0}' } });
    expect(crash.code).toBe(2);
    expect(crash.stderr).toMatch(/LOCKSTEP_CRASH_POINT/);
  });

  it('a missing nats-server exits 2 and says how to install it', () => {
    const r = cli(['train', '--topology', 'tiny', '--steps', '2', '--nats-server', '/nonexistent/nats-server', '--json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nats-server was not found at \/nonexistent\/nats-server \(--nats-server\)/);
    expect(r.stderr).toMatch(/apt-get install -y nats-server/);
    expect(r.json).toMatchObject({ error: { name: 'NatsServerMissing' } });
  });

  it('refuses palm-540b one host a process, naming the field to change (a usage error: exit 2, before anything starts)', () => {
    const r = cli(['train', '--topology', 'palm-540b', '--hosts-per-process', '1', '--steps', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/starting/); // said before anything starts
    expect(r.stderr).toMatch(/hostsPerProcess: topology palm-540b needs 1539 processes .*train starts at most 64 on one machine/);
  });
});
