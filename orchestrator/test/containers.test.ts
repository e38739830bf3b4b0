import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { containerEngine, startLockstepCluster, type LockstepCluster } from '@lockstep/infra/testcontainers';
import { parseTopology, preset } from '@lockstep/topology';
import { runReference } from '../src/index.ts';

/**
 * The container suite: a lockstep cluster in containers (testcontainers), with container faults. Needs a Docker
 * engine and the images from scripts/images.sh. Without an engine it skips with one line saying so, except where
 * LOCKSTEP_REQUIRE_DOCKER=1 (CI), where a missing engine or image is a failure.
 */
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
const requireDocker = process.env.LOCKSTEP_REQUIRE_DOCKER === '1';
const engine = await containerEngine();
const images = engine.ok && spawnSync('docker', ['image', 'inspect', 'lockstep:dev', 'lockstep-nats:2.9.10'], { stdio: 'ignore' }).status === 0;
const ready = engine.ok && images;
if (!ready && !requireDocker) {
  process.stderr.write(`containers: skipped: ${engine.ok ? 'images lockstep:dev and lockstep-nats:2.9.10 are missing (run scripts/images.sh)' : `no container engine (${engine.reason})`}\n`);
}

const STEPS = 40;
const ref = runReference(parseTopology(preset('tiny')), STEPS).paramsHash;

describe.skipIf(!ready && !requireDocker)('lockstep in containers (testcontainers)', () => {
  let c: LockstepCluster | undefined;
  beforeAll(() => {
    expect(engine.ok, `no container engine: ${engine.ok ? '' : engine.reason}`).toBe(true);
    expect(images, 'images lockstep:dev and lockstep-nats:2.9.10 are missing: run scripts/images.sh').toBe(true);
  });
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  const expectReference = (r: Awaited<ReturnType<LockstepCluster['waitForClient']>>) => {
    expect(r.exitCode, JSON.stringify(r.summary?.failure)).toBe(0);
    expect(r.summary).toMatchObject({ paramsHash: ref, logged: STEPS, podsIdenticalEveryStep: true });
    const steps = r.steps.map((s) => s.step).filter((s, i, a) => a.indexOf(s) === i);
    expect(steps.length).toBe(STEPS); // none skipped
    expect(r.steps.every((s) => s.podsAgree)).toBe(true);
  };

  it('a 40-step run equals the reference, bit for bit', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    expectReference(await c.waitForClient());
  }, 300_000);

  it('a host container killed mid-run and started again heals from its peer; the run still equals the reference', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.kill('host-1-1');
    expect(c.committed()).toBeLessThan(STEPS); // the fault landed mid-run
    await c.faults.start('host-1-1'); // what a restart policy does; it finds its marker and heals
    expectReference(await c.waitForClient());
    // its second life healed from host 1 of pod 0 (whether its step was retried depends on where the kill landed)
    const out = spawnSync('docker', ['logs', c.containers['host-1-1'].getId()], { encoding: 'utf8' });
    const logs = `${out.stdout}${out.stderr}`; // pino writes to stderr
    expect(logs).toMatch(/"from":"host\/0\/1".*"msg":"healed from cross-pod peer"/);
  }, 300_000);

  it('a host container paused past its deadline and unpaused: nothing lost, the bits unchanged', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.pause('host-0-1');
    expect(c.committed()).toBeLessThan(STEPS);
    await new Promise((r) => setTimeout(r, 4500)); // past 3 missed heartbeats
    await c.faults.unpause('host-0-1');
    // paused mid-attempt the attempt is retried; paused after preparing, the commit is resent until it answers:
    // either way no step is lost or skipped and the bits are the reference's
    expectReference(await c.waitForClient());
  }, 300_000);

  it("one pod's nats container disconnected from the DCN network and reconnected", async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.disconnect('nats-1', 'dcn');
    expect(c.committed()).toBeLessThan(STEPS);
    await new Promise((r) => setTimeout(r, 3000));
    await c.faults.connect('nats-1', 'dcn');
    expectReference(await c.waitForClient());
  }, 300_000);

  it('a nats container restarted', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.restart('nats-1');
    expect(c.committed()).toBeLessThan(STEPS);
    expectReference(await c.waitForClient());
  }, 300_000);

  it('the committed compose demo trains to the end: the client exits 0 with the reference paramsHash', () => {
    const root = join(import.meta.dirname, '..', '..');
    const out = execFileSync('bash', [join(root, 'scripts', 'compose-demo.sh')], { encoding: 'utf8', env: { ...process.env, SKIP_IMAGES: '1' }, timeout: 600_000 });
    expect(out).toMatch(/compose demo: client exited with code 0/);
    const demoRef = runReference(parseTopology(preset('demo')), 100).paramsHash;
    expect(out).toContain(`pod/0 paramsHash              ${demoRef}`);
    expect(out).toContain(`pod/1 paramsHash              ${demoRef}`);
  }, 700_000);
});
