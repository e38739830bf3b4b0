import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { containerEngine, startLockstepCluster, type StartedLockstepCluster as LockstepCluster } from '@lockstep/infra/testcontainers';
import { decodeControl, decodeTensorChunk, isTensorFrame, parseTopology, preset, subjects } from '@lockstep/topology';
import { decodeBatch } from '@lockstep/actors';
import { imageDefaults } from '@lockstep/infra';
import { runReference } from '../src/index.ts';
import { freePort } from '../src/ports.ts';

/**
 * The container suite: a lockstep cluster in containers (testcontainers), with container faults. Needs a Docker
 * engine and the images from scripts/images.sh. Without an engine it skips with one line saying so, except where
 * LOCKSTEP_REQUIRE_DOCKER=1 (CI), where a missing engine or image is a failure.
 */
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
const requireDocker = process.env.LOCKSTEP_REQUIRE_DOCKER === '1';
const engine = await containerEngine();
// the tags LOCKSTEP_IMAGE and LOCKSTEP_NATS_IMAGE name (scripts/images.sh builds them), else lockstep:dev and lockstep-nats:2.9.10
const tags = imageDefaults();
const images = engine.ok && spawnSync('docker', ['image', 'inspect', tags.image, tags.natsImage], { stdio: 'ignore' }).status === 0;
const ready = engine.ok && images;
if (!ready && !requireDocker) {
  process.stderr.write(
    `containers: skipped: ${engine.ok ? `images ${tags.image} and ${tags.natsImage} are missing (run scripts/images.sh)` : `no container engine (${engine.reason})`}\n`,
  );
}

const STEPS = 40;
const ref = runReference(parseTopology(preset('tiny')), STEPS).paramsHash;

/** What an observer saw on the wire, in the order its server delivered it. */
interface Seen {
  subject: string;
  kind: string;
  step: number;
  attempt: number;
  sender: string;
  tensor?: string;
  paramsHash?: string;
}
function watch(nc: NatsConnection, runId: string): Seen[] {
  const seen: Seen[] = [];
  const take = (m: { subject: string; data: Uint8Array }): void => {
    // what a pod tells its hosts' processes (and they one another) travels in batch frames: the messages inside count
    if (m.subject.startsWith(`${subjects.root(runId)}.batch.`)) {
      const b = decodeBatch(m.data);
      if (b.ok) for (const e of b.entries) take({ subject: e.subject, data: e.bytes });
      return;
    }
    if (isTensorFrame(m.data)) {
      const d = decodeTensorChunk(m.data);
      if (d.ok)
        seen.push({
          subject: m.subject,
          kind: d.value.header.kind,
          step: d.value.header.step,
          attempt: d.value.header.attempt,
          sender: d.value.header.sender,
          tensor: d.value.header.tensor,
        });
      return;
    }
    const d = decodeControl(m.data, 1 << 20);
    if (d.ok)
      seen.push({
        subject: m.subject,
        kind: d.value.kind,
        step: d.value.step,
        attempt: d.value.attempt,
        sender: d.value.sender,
        paramsHash: 'paramsHash' in d.value ? (d.value.paramsHash as string) : undefined,
      });
  };
  nc.subscribe(`${subjects.root(runId)}.>`, { callback: (_err, m) => take(m) });
  return seen;
}

/**
 * A script for `node -e` in a container: open a route to `host`'s route port as a nats-server would, without a login;
 * print (as JSON) everything the server sent until it closed the connection; exit 1 if it did not within 5 s.
 */
function routeIntruder(host: string): string {
  const connect = { echo: false, verbose: false, pedantic: false, tls_required: false, name: 'NINTRUDER', cluster: 'lockstep' };
  const hello = `CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`;
  return `
    const s = require('node:net').connect(6222, ${JSON.stringify(host)});
    let got = '', sent = false;
    s.on('data', (d) => {
      got += d;
      if (!sent && got.includes('\\r\\n')) { sent = true; s.write(${JSON.stringify(hello)}); }
    });
    s.on('error', () => {});
    s.on('close', () => { console.log(JSON.stringify(got)); process.exit(0); });
    setTimeout(() => { console.log(JSON.stringify(got)); process.exit(1); }, 5000);
  `;
}

describe.skipIf(!ready && !requireDocker)('lockstep in containers (testcontainers)', () => {
  let c: LockstepCluster | undefined;
  beforeAll(() => {
    expect(engine.ok, `no container engine: ${engine.ok ? '' : engine.reason}`).toBe(true);
    expect(images, `images ${tags.image} and ${tags.natsImage} are missing: run scripts/images.sh`).toBe(true);
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
    expect(r.steps.length).toBe(STEPS); // none committed twice
    expect(r.steps.every((s) => s.podsAgree)).toBe(true);
  };

  it('a 20-step run equals the reference; an observer on the wire sees every commit once, each after its pods prepared and its hosts exchanged; the observer may not publish, a host only as itself', async () => {
    const steps = 20;
    c = await startLockstepCluster({ topology: 'tiny', steps, holdClient: true });
    const nc = await c.connect(0); // the observer user, on pod 0's server: it sees pod 1's traffic over the route
    const seen = watch(nc, c.runId);
    await nc.flush();
    await c.startClient();
    const r = await c.waitForClient();
    expect(r.exitCode, JSON.stringify(r.summary?.failure)).toBe(0);
    expect(r.summary).toMatchObject({
      paramsHash: runReference(parseTopology(preset('tiny')), steps).paramsHash,
      logged: steps,
      podsIdenticalEveryStep: true,
    });
    await nc.flush();

    const progress = seen.filter((m) => m.subject === subjects.progress(c!.runId));
    expect(progress.map((m) => m.step)).toEqual(Array.from({ length: steps }, (_, i) => i)); // every step, once, in order
    expect(progress.at(-1)?.paramsHash).toBe(r.summary?.paramsHash);
    const at = (pred: (m: Seen) => boolean) => seen.findIndex(pred);
    for (let step = 0; step < steps; step++) {
      for (let p = 0; p < 2; p++) {
        const commit = at((m) => m.subject === subjects.podCmd(c!.runId, p) && m.kind === 'step.commit' && m.step === step);
        expect(commit, `step ${step}: a commit to pod ${p}`).toBeGreaterThan(-1);
        const { attempt } = seen[commit];
        // the client commits an attempt only after both pods prepared it
        for (let q = 0; q < 2; q++) {
          const prepared = at((m) => m.kind === 'pod.prepared' && m.sender === `pod/${q}` && m.step === step && m.attempt === attempt);
          expect(prepared, `step ${step}: pod ${q} prepared before pod ${p} was told to commit`).toBeGreaterThan(-1);
          expect(prepared).toBeLessThan(commit);
        }
        for (let h = 0; h < 2; h++) {
          // a host is told to commit only after it prepared, and after the matching host of the other pod sent it its gradient
          const hostCommit = at(
            (m) => m.subject === subjects.hostCmd(c!.runId, p, h) && m.kind === 'host.commit' && m.step === step && m.attempt === attempt,
          );
          const prepared = at(
            (m) => m.kind === 'host.prepared' && m.sender === `host/${p}/${h}` && m.step === step && m.attempt === attempt,
          );
          const exchanged = at(
            (m) =>
              m.subject === subjects.hostData(c!.runId, p, h, 1 - p, h) &&
              m.tensor === 'grad.exchange' &&
              m.sender === `host/${1 - p}/${h}` &&
              m.step === step &&
              m.attempt === attempt,
          );
          expect(
            Math.min(hostCommit, prepared, exchanged),
            `step ${step} host/${p}/${h}: commit ${hostCommit}, prepared ${prepared}, exchange ${exchanged}`,
          ).toBeGreaterThan(-1);
          expect(exchanged).toBeLessThan(prepared);
          expect(prepared).toBeLessThan(hostCommit);
        }
      }
    }

    // the observer may watch, not speak: its publish to a pod's command subject is refused by the server
    const errors: string[] = [];
    void (async () => {
      for await (const st of nc.status()) if (st.type === 'error') errors.push(String((st as { error?: Error }).error?.message));
    })();
    nc.publish(subjects.podCmd(c.runId, 0), JSON.stringify({ kind: 'step.commit' }));
    await nc.flush().catch(() => {});
    const until = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    expect(errors.join('\n')).toMatch(/Permissions Violation for Publish to "lockstep\.[^.]+\.pod\.0\.cmd"/);

    // on the dcn network, a peer that opens a route to nats-0 without the run's route login is refused (no PONG: it never joined)
    const routeProbe = await c.nats[1].exec(['node', '-e', routeIntruder('nats-0')]);
    expect(routeProbe.exitCode, routeProbe.output).toBe(0);
    expect(JSON.parse(routeProbe.stdout)).toMatch(/^INFO .*"auth_required":true.*\r\n-ERR 'Authorization Violation'\r\n$/);

    // host-0-0's user (the container of host/0/0) may publish as host/0/0 only: as host/0/1 the server refuses it
    const host = await c.connect(0, 'host/0/0');
    const hostErrors: string[] = [];
    void (async () => {
      for await (const st of host.status()) if (st.type === 'error') hostErrors.push(String((st as { error?: Error }).error?.message));
    })();
    const asOther = [subjects.hostData(c.runId, 0, 0, 0, 1), subjects.podReport(c.runId, 0, 1), subjects.podReport(c.runId, 1, 0)];
    for (const s of asOther) host.publish(s, JSON.stringify({ kind: 'host.prepared' }));
    await host.flush().catch(() => {});
    const hostUntil = Date.now() + 5000;
    while (hostErrors.length < asOther.length && Date.now() < hostUntil) await new Promise((res) => setTimeout(res, 50));
    expect(hostErrors).toEqual(asOther.map((s) => `Permissions Violation for Publish to "${s}"`));
  }, 300_000);

  it('a host container killed mid-run and started again heals from its peer; the run still equals the reference', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.kill('host/1/1');
    expect(c.committed()).toBeLessThan(STEPS); // the fault landed mid-run
    await c.faults.start('host/1/1'); // what a restart policy does; it finds its marker and heals
    expectReference(await c.waitForClient());
    // its second life healed from host 1 of pod 0 (whether its step was retried depends on where the kill landed)
    const out = spawnSync('docker', ['logs', c.containers['host-1-1'].getId()], { encoding: 'utf8' });
    const logs = `${out.stdout}${out.stderr}`; // pino writes to stderr
    expect(logs).toMatch(/"from":"host\/0\/1".*"msg":"healed from cross-pod peer"/);
  }, 300_000);

  it('a Topology object with hosts grouped two to a container: the group, killed by the name of a host it runs and started again, heals; the run equals the reference', async () => {
    const t = parseTopology({ ...preset('tiny'), name: 'tiny-grouped', hostsPerProcess: 2 });
    expect(runReference(t, STEPS).paramsHash).toBe(ref); // grouping changes where hosts run, not the arithmetic
    c = await startLockstepCluster({ topology: t, steps: STEPS });
    expect(Object.keys(c.containers).filter((n) => n.startsWith('host-'))).toEqual(['host-0-0..1', 'host-1-0..1']);
    await c.untilStep(5);
    await c.faults.kill('host/1/1'); // the container of host-1-0..1
    expect(c.committed()).toBeLessThan(STEPS);
    await c.faults.start('host/1/1');
    expectReference(await c.waitForClient());
  }, 300_000);

  it('a host container paused past its deadline and unpaused: nothing lost, the bits unchanged', async () => {
    // the README's example
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS, holdClient: true });
    const nc = await c.connect(0); // pod 0's server, as the observer
    const commits: number[] = [];
    nc.subscribe(subjects.progress(c.runId), { callback: (_e, m) => void commits.push(m.json<{ step: number }>().step) });
    await c.startClient();
    await c.untilStep(5);
    await c.faults.pause('host/0/1');
    expect(c.committed()).toBeLessThan(STEPS);
    await new Promise((r) => setTimeout(r, 4500)); // past 3 missed heartbeats
    await c.faults.unpause('host/0/1');
    // paused mid-attempt the attempt is retried; paused after preparing, the commit is resent until it answers:
    // either way no step is lost or skipped and the bits are the reference's
    expectReference(await c.waitForClient());
    expect(new Set(commits).size).toBe(STEPS);
  }, 300_000);

  it("one pod's nats container disconnected from the DCN network and reconnected", async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.disconnect('nats/1', 'dcn');
    expect(c.committed()).toBeLessThan(STEPS);
    await new Promise((r) => setTimeout(r, 3000));
    await c.faults.connect('nats/1', 'dcn');
    // Docker may publish the server's port anew when it joins a network: the handle reads it when asked
    const nc = await c.connect(1, 'observer', { reconnect: false });
    expect(nc.info?.server_name).toBe('lockstep-pod-1');
    expectReference(await c.waitForClient());
  }, 300_000);

  it('a nats container restarted', async () => {
    c = await startLockstepCluster({ topology: 'tiny', steps: STEPS });
    await c.untilStep(5);
    await c.faults.restart('nats/1');
    expect(c.committed()).toBeLessThan(STEPS);
    expectReference(await c.waitForClient());
  }, 300_000);

  it('the committed compose demo trains to the end: the client exits 0 with the reference paramsHash', async () => {
    const root = join(import.meta.dirname, '..', '..');
    // a compose project and a status page port of this run's own: others may run the demo on the same engine
    const env = {
      ...process.env,
      SKIP_IMAGES: '1',
      COMPOSE_PROJECT_NAME: `lockstep-demo-${process.pid}`,
      LOCKSTEP_UI_PORT: String(await freePort()),
    };
    const out = execFileSync('bash', [join(root, 'scripts', 'compose-demo.sh')], { encoding: 'utf8', env, timeout: 600_000 });
    expect(out).toMatch(/compose demo: client exited with code 0/);
    const demoRef = runReference(parseTopology(preset('demo')), 100).paramsHash;
    expect(out).toContain(`pod/0 paramsHash              ${demoRef}`);
    expect(out).toContain(`pod/1 paramsHash              ${demoRef}`);
  }, 700_000);
});
