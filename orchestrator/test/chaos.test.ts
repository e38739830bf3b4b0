import { readFileSync, writeFileSync } from 'node:fs';
import { scenarioJsonSchema } from '@lockstep/topology';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { faultClass, loadScenario, runScenario, scenarioFiles } from '../src/index.ts';
import { cli, quietLog, tempDir } from './helpers.ts';

const dir = join(import.meta.dirname, '..', '..', 'scenarios');
const files = scenarioFiles(dir).filter((f) => !f.endsWith('duplicate-reorder-delay.yaml'));

describe('fault-injection scenarios (scenarios/*.yaml)', () => {
  it('there are at least 15 scenarios, covering crashes, stalls, the DCN, checkpoints, message faults and unrecoverable cases', () => {
    const all = scenarioFiles(dir).map(loadScenario);
    expect(all.length).toBeGreaterThanOrEqual(15);
    expect(new Set(all.map(faultClass))).toEqual(new Set(['checkpoint', 'crash', 'dcn', 'message', 'stall', 'unrecoverable']));
  });

  it.each(files.map((f) => [loadScenario(f).name, f]))('%s', async (_name, file) => {
    const s = loadScenario(file);
    const r = await runScenario(s, { log: quietLog, runDir: tempDir() });
    expect(r.dispatchDepth).toBe(s.dispatch?.depth ?? 2);
    expect(r.notApplicable).toBeNull();
    expect(r.problems).toEqual([]);
    expect(r.passed).toBe(true);
    expect([r.duplicateCommits, r.skippedSteps, r.hashMismatches]).toEqual([0, 0, 0]);
    expect(r.faultsInjected).toBeGreaterThan(0);
    // a failing scenario ends with the kind it names, carried from the client to here as a kind, not as text
    if (s.expect.outcome === 'fails') expect(r.failure).toBe(s.expect.failure);
    else expect(r.failure).toBeNull();
  });

  // every scenario above runs with the preset's two steps in flight; these also with one (chaos --dispatch-depth 1), a
  // subset to keep CI's time: a host crash, a resumed client, lost commits, a checkpoint restore, a lost dispatch
  const oneInFlight = [
    'client-killed-resumed',
    'host-killed-in-exchange',
    'lost-commits',
    'torn-checkpoint',
    'dispatch-lost-while-committing',
  ];
  it.each(oneInFlight)('%s, one step in flight', async (name) => {
    const s = loadScenario(join(dir, `${name}.yaml`));
    const r = await runScenario(s, { log: quietLog, runDir: tempDir(), dispatchDepth: 1 });
    expect(r.dispatchDepth).toBe(1);
    expect(r.problems).toEqual([]);
    expect(r.passed).toBe(true);
    expect([r.duplicateCommits, r.skippedSteps, r.hashMismatches]).toEqual([0, 0, 0]);
    expect(r.faultsInjected).toBeGreaterThan(0);
  });

  // with the in-pod collectives as chains (palm-540b's) on tiny's 2 hosts a pod (chain-middle-host-killed.yaml, above,
  // runs them on demo's 4, with a middle link): a lost link is asked for again, a killed host heals, a forged copy of
  // a running sum is caught (chaos --collectives chain)
  const chain = ['host-killed-in-exchange', 'message-loss', 'forged-copy', 'host-killed-on-prepared'];
  it.each(chain)('%s, chain collectives', async (name) => {
    const s = loadScenario(join(dir, `${name}.yaml`));
    const r = await runScenario(s, { log: quietLog, runDir: tempDir(), inPod: 'chain' });
    expect(r.problems).toEqual([]);
    expect(r.passed).toBe(true);
    expect([r.duplicateCommits, r.skippedSteps, r.hashMismatches]).toEqual([0, 0, 0]);
    expect(r.faultsInjected).toBeGreaterThan(0);
  });

  it('a scenario whose crash point needs two steps in flight is not run with one, and says why (neither passed nor failed)', async () => {
    const s = loadScenario(join(dir, 'host-killed-on-prepared.yaml'));
    const r = await runScenario(s, { log: quietLog, runDir: tempDir(), dispatchDepth: 1 });
    expect(r.notApplicable).toMatch(/onPrepared crash point needs dispatch.depth >= 2/);
    expect([r.passed, r.problems, r.stepsCommitted]).toEqual([false, [], 0]);
  });

  it('a failing run that ends with another kind or cause than the scenario names fails the scenario, saying what it got', () => {
    const d = tempDir();
    const text = readFileSync(join(dir, 'pod-stalled-unrecoverable.yaml'), 'utf8').replace(
      /^expect: .*$/m,
      'expect: { outcome: fails, failure: podsNotReady, cause: { pods: [{ pod: 0, silentHosts: [] }] } }',
    );
    const file = join(d, 'wrong-pod.yaml');
    writeFileSync(file, text);
    const r = cli(['chaos', file, '--json'], { timeoutMs: 120_000 });
    expect(r.code).toBe(1);
    const [s] = r.json!.scenarios as { passed: boolean; failure: string; problems: string[] }[];
    expect(s.passed).toBe(false);
    expect(s.failure).toBe('podsNotReady'); // the kind was right ...
    expect(s.problems).toEqual([expect.stringMatching(/^expected a cause with .*"pod":0.*, got .*"pod":1/)]); // ... the pod was not
  });

  it('lockstep chaos <file> --json prints the documented fields last', () => {
    const r = cli(['chaos', join(dir, 'duplicate-reorder-delay.yaml'), '--json']);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({
      passed: 1,
      failed: 0,
      summary: { passed: 1, run: 1, duplicateCommits: 0, skippedSteps: 0, hashMismatches: 0, goodput: 1 },
    });
    const [s] = r.json!.scenarios as Record<string, unknown>[];
    for (const k of [
      'name',
      'passed',
      'faultsInjected',
      'stepsCommitted',
      'duplicateCommits',
      'skippedSteps',
      'hashMismatches',
      'recoveryMs',
    ])
      expect(s).toHaveProperty(k);
    expect(s).toMatchObject({
      name: 'duplicate-reorder-delay',
      passed: true,
      stepsCommitted: 25,
      duplicateCommits: 0,
      skippedSteps: 0,
      hashMismatches: 0,
    });
  });

  it('the committed JSON Schema for editors matches the scenario schema', () => {
    expect(JSON.parse(readFileSync(join(dir, 'scenario.schema.json'), 'utf8'))).toEqual(scenarioJsonSchema());
  });

  it('a scenario file with a bad field exits 2 naming it', () => {
    const d = tempDir();
    const file = join(d, 'bad.yaml');
    writeFileSync(file, 'name: bad\ntopology: tiny\nsteps: 0\nexpect: {outcome: recovers}\n');
    const r = cli(['chaos', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/steps: must be >= 1/);
  });
});

// PaLM 540B's shape: 2 pods x 768 hosts, 96 to a process, chain collectives, modeled compute (about 30 s each here)
const palmDir = join(dir, 'palm-540b');
describe('fault-injection scenarios at full scale (scenarios/palm-540b/*.yaml)', () => {
  it('cover a host process killed mid-exchange, a DCN cut and heal, and a pod scheduler killed', () => {
    const all = scenarioFiles(palmDir).map(loadScenario);
    expect(all.every((s) => s.topology === 'palm-540b')).toBe(true);
    expect(new Set(all.map((s) => s.timeline.map((f) => `${f.action} ${f.target.split('/')[0]}`).join()))).toEqual(
      new Set(['kill host', 'cut dcn,heal dcn', 'kill pod']),
    );
  });

  it.each(scenarioFiles(palmDir).map((f) => [loadScenario(f).name, f]))(
    '%s',
    async (_name, file) => {
      const r = await runScenario(loadScenario(file), { log: quietLog, runDir: tempDir() });
      expect(r.problems).toEqual([]);
      expect(r.passed).toBe(true);
      expect([r.duplicateCommits, r.skippedSteps, r.hashMismatches]).toEqual([0, 0, 0]);
      expect(r.faultsInjected).toBeGreaterThan(0);
    },
    600_000,
  );
});
