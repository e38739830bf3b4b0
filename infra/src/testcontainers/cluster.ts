import { randomBytes } from 'node:crypto';
import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { GenericContainer, Network, Wait, getContainerRuntimeClient, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import type { Role } from '@lockstep/topology';
import { natsConfig, runLogServerConfig } from '../nats/config.ts';
import { natsUsers, newCredentials, type Credentials } from '../nats/users.ts';

/**
 * A lockstep cluster in containers, for tests (yours or lockstep's): one
 * nats-server per pod (clustered over a `dcn` network standing for the
 * data-center network), a JetStream server for the run log, one container per
 * pod scheduler, per host and the client. Images come from scripts/images.sh
 * (no registry needed). The returned handle waits for the client, hands back
 * NATS connections to the pods' servers and injects container faults.
 *
 * Every role connects as its own NATS user with per-subject permissions (as
 * in the launcher's runs); the handle's connections log in as `observer`,
 * which may watch every subject of the run and publish nothing, or as a role.
 *
 *   const c = await startLockstepCluster({ topology: 'tiny', steps: 20 });
 *   const nc = await c.connect(0);          // watch lockstep.<run>.> on pod 0's server
 *   const r = await c.waitForClient();      // { exitCode, summary, steps }
 *   await c.stop();
 */
export interface ClusterOptions {
  /** A preset name (tiny, demo). */
  topology: string;
  pods?: number;
  hostsPerPod?: number;
  steps: number;
  runId?: string;
  image?: string;
  natsImage?: string;
  /** Start every container but the client; call startClient() (after subscribing, say). */
  holdClient?: boolean;
}

export interface ClientSummary {
  exitCode: number;
  summary:
    | {
        paramsHash: string | null;
        logged: number;
        podsIdenticalEveryStep: boolean;
        failure: { kind: string; message: string } | null;
        retried: unknown[];
      }
    | undefined;
  steps: { step: number; paramsHash: string; podsAgree: boolean }[];
}

export type ClusterLogin = Role | 'observer';

export interface LockstepCluster {
  runId: string;
  network: Record<string, StartedNetwork>;
  nats: StartedTestContainer[];
  runLog: StartedTestContainer;
  containers: Record<string, StartedTestContainer>;
  /** The users the servers know: one per role, and the observer. */
  credentials: Credentials & { observer: { user: string; password: string } };
  /**
   * How to reach pod `pod`'s nats-server from the test, logged in as `as`
   * (default observer). The host port is read when called: Docker may move a
   * container's published ports when it joins or leaves a network.
   */
  natsOptions(pod: number, as?: ClusterLogin): Promise<ConnectionOptions>;
  /** A connection to pod `pod`'s nats-server (closed by stop()). */
  connect(pod: number, as?: ClusterLogin, options?: Partial<ConnectionOptions>): Promise<NatsConnection>;
  /** Start the client (only with holdClient). */
  startClient(): Promise<void>;
  /** Steps committed so far (from the client's output). */
  committed(): number;
  /** Resolves once the client has committed `step` (or rejects after `ms`). */
  untilStep(step: number, ms?: number): Promise<void>;
  waitForClient(ms?: number): Promise<ClientSummary>;
  faults: {
    kill(name: string): Promise<void>;
    start(name: string): Promise<void>;
    pause(name: string): Promise<void>;
    unpause(name: string): Promise<void>;
    restart(name: string): Promise<void>;
    disconnect(name: string, network: string): Promise<void>;
    connect(name: string, network: string): Promise<void>;
  };
  stop(): Promise<void>;
}

const PRESET_SHAPE: Record<string, { pods: number; hostsPerPod: number }> = {
  tiny: { pods: 2, hostsPerPod: 2 },
  demo: { pods: 2, hostsPerPod: 4 },
};
const NATS_PORT = 4222;
const ROUTE_PORT = 6222;
const CONF = '/etc/lockstep/nats.conf';

export async function startLockstepCluster(o: ClusterOptions): Promise<LockstepCluster> {
  const shape = {
    ...PRESET_SHAPE[o.topology],
    ...(o.pods ? { pods: o.pods } : {}),
    ...(o.hostsPerPod ? { hostsPerPod: o.hostsPerPod } : {}),
  };
  if (!shape.pods) throw new Error(`startLockstepCluster: unknown preset ${o.topology}; give pods and hostsPerPod`);
  const image = o.image ?? 'lockstep:dev';
  const natsImage = o.natsImage ?? 'lockstep-nats:2.9.10';
  const runId = o.runId ?? 'tc';
  const started: { stop: () => Promise<unknown> }[] = [];
  const network: Record<string, StartedNetwork> = {};
  const containers: Record<string, StartedTestContainer> = {};
  const runtime = await getContainerRuntimeClient();
  const credentials = { ...newCredentials(), observer: { user: 'observer', password: randomBytes(18).toString('base64url') } };
  const users = natsUsers(runId, credentials, credentials.observer);
  const connections: NatsConnection[] = [];
  const lines: string[] = [];
  const stepsSeen: ClientSummary['steps'] = [];
  let summary: ClientSummary['summary'];
  const stopAll = async () => {
    for (const nc of connections) await nc.close().catch(() => {});
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };
  try {
    for (const n of ['dcn', 'ctl', ...Array.from({ length: shape.pods }, (_, p) => `pod-${p}`)]) {
      network[n] = await new Network().start();
      started.push(network[n]);
    }
    const attach = async (c: StartedTestContainer, nets: string[], alias: string) => {
      for (const n of nets) {
        await runtime.container.connectToNetwork(
          runtime.container.getById(c.getId()),
          runtime.network.getById(network[n].getId()) as never,
          [alias],
        );
      }
    };
    // one nats-server per pod, routed to the others over the dcn network; the run log's JetStream server on ctl
    const server = (conf: string) =>
      new GenericContainer(natsImage)
        .withCopyContentToContainer([{ content: conf, target: CONF }])
        .withCommand(['-c', CONF])
        .withExposedPorts(NATS_PORT)
        .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
        .withStartupTimeout(60_000);
    const nats: StartedTestContainer[] = [];
    for (let p = 0; p < shape.pods; p++) {
      const routes = Array.from({ length: shape.pods }, (_, q) => q)
        .filter((q) => q !== p)
        .map((q) => ({ host: `nats-${q}`, port: ROUTE_PORT }));
      const conf = natsConfig({ pod: p, host: '0.0.0.0', port: NATS_PORT, clusterPort: ROUTE_PORT, routes, users: users.cluster });
      const c = await server(conf).withNetwork(network.dcn).withNetworkAliases(`nats-${p}`).start();
      started.push(c);
      await attach(c, [`pod-${p}`, 'ctl'], `nats-${p}`);
      nats.push(c);
      containers[`nats-${p}`] = c;
    }
    const runLog = await server(runLogServerConfig({ host: '0.0.0.0', port: NATS_PORT, storeDir: '/data', users: users.runLog }))
      .withNetwork(network.ctl)
      .withNetworkAliases('nats-log')
      .start();
    started.push(runLog);
    containers['nats-log'] = runLog;

    const ckpt = mkdtempSync(join(tmpdir(), 'lockstep-tc-ckpt-'));
    chmodSync(ckpt, 0o777);
    const env = (r: Role) => ({
      LOCKSTEP_NATS_USER: credentials[r].user,
      LOCKSTEP_NATS_PASS: credentials[r].password,
      LOCKSTEP_RESTART_MARKER: '/tmp/lockstep-started',
    });
    const common = ['--run', runId, '--topology', o.topology];
    const role = async (name: string, net: string, command: string[]) => {
      const c = await new GenericContainer(image)
        .withNetwork(network[net])
        .withNetworkAliases(name)
        .withEnvironment(env(command[0] as Role))
        .withBindMounts([{ source: ckpt, target: '/ckpt' }])
        .withCommand(command)
        .start();
      started.push(c);
      containers[name] = c;
      return c;
    };
    for (let p = 0; p < shape.pods; p++)
      await role(`pod-${p}`, `pod-${p}`, ['pod', '--pod', String(p), ...common, '--nats', `nats://nats-${p}:${NATS_PORT}`]);
    for (let p = 0; p < shape.pods; p++) {
      for (let h = 0; h < shape.hostsPerPod; h++)
        await role(`host-${p}-${h}`, `pod-${p}`, [
          'host',
          '--pod',
          String(p),
          '--hosts',
          String(h),
          '--ckpt-dir',
          '/ckpt',
          ...common,
          '--nats',
          `nats://nats-${p}:${NATS_PORT}`,
        ]);
    }
    const natsAll = Array.from({ length: shape.pods }, (_, p) => `nats://nats-${p}:${NATS_PORT}`).join(',');
    const startClient = async () => {
      if (containers.client) throw new Error('the client is already started');
      const client = await role('client', 'ctl', [
        'client',
        '--steps',
        String(o.steps),
        '--log-nats',
        `nats://nats-log:${NATS_PORT}`,
        '--ckpt-dir',
        '/ckpt',
        ...common,
        '--nats',
        natsAll,
      ]);
      const out = await client.logs();
      let partial = '';
      out.on('data', (d: Buffer | string) => {
        partial += String(d);
        const parts = partial.split('\n');
        partial = parts.pop() ?? '';
        for (const l of parts) {
          lines.push(l);
          if (!l.startsWith('{"type"')) continue;
          try {
            const v = JSON.parse(l) as { type: string; step: number; paramsHash: string; podsAgree: boolean };
            if (v.type === 'step.committed') stepsSeen.push({ step: v.step, paramsHash: v.paramsHash, podsAgree: v.podsAgree });
            if (v.type === 'summary') summary = v as unknown as ClientSummary['summary'];
          } catch {
            // a log line that is not the protocol
          }
        }
      });
    };
    if (!o.holdClient) await startClient();

    const byName = (name: string) => {
      const c = containers[name];
      if (!c) throw new Error(`no container ${name} (have ${Object.keys(containers).join(', ')})`);
      return runtime.container.getById(c.getId());
    };
    const netOf = (name: string) =>
      runtime.network.getById(network[name].getId()) as unknown as {
        disconnect(o: object): Promise<void>;
        connect(o: object): Promise<void>;
      };
    const natsOptions = async (pod: number, as: ClusterLogin = 'observer'): Promise<ConnectionOptions> => {
      const c = nats[pod];
      if (!c) throw new Error(`no nats-server for pod ${pod} (the cluster has ${nats.length})`);
      const info = (await runtime.container.getById(c.getId()).inspect()) as {
        NetworkSettings: { Ports: Record<string, { HostPort: string }[] | null> };
      };
      const bound = info.NetworkSettings.Ports[`${NATS_PORT}/tcp`]?.[0]?.HostPort;
      if (!bound) throw new Error(`nats-${pod} publishes no port for ${NATS_PORT} (is it running?)`);
      return { servers: `${c.getHost()}:${bound}`, user: credentials[as].user, pass: credentials[as].password, name: `test-${as}` };
    };
    const cluster: LockstepCluster = {
      runId,
      network,
      nats,
      runLog,
      containers,
      credentials,
      natsOptions,
      connect: async (pod, as = 'observer', options = {}) => {
        const nc = await connect({ ...(await natsOptions(pod, as)), timeout: 10_000, ...options });
        connections.push(nc);
        return nc;
      },
      startClient,
      committed: () => new Set(stepsSeen.map((s) => s.step)).size,
      untilStep: async (step, ms = 120_000) => {
        const until = Date.now() + ms;
        while (!stepsSeen.some((s) => s.step >= step)) {
          if (Date.now() > until)
            throw new Error(`client did not commit step ${step} within ${ms} ms; its last lines:\n${lines.slice(-10).join('\n')}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      waitForClient: async (ms = 300_000) => {
        const waited = (await Promise.race([
          byName('client').wait(),
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`client did not exit within ${ms} ms; its last lines:\n${lines.slice(-10).join('\n')}`)), ms),
          ),
        ])) as { StatusCode: number };
        await new Promise((r) => setTimeout(r, 200)); // the last log lines
        return { exitCode: waited.StatusCode, summary, steps: stepsSeen };
      },
      faults: {
        kill: async (name) => void (await byName(name).kill({ signal: 'SIGKILL' })),
        start: async (name) => void (await byName(name).start()),
        pause: async (name) => void (await byName(name).pause()),
        unpause: async (name) => void (await byName(name).unpause()),
        restart: async (name) => void (await byName(name).restart({ t: 0 })),
        disconnect: async (name, net) => netOf(net).disconnect({ Container: containers[name].getId(), Force: true }),
        connect: async (name, net) => netOf(net).connect({ Container: containers[name].getId(), EndpointConfig: { Aliases: [name] } }),
      },
      stop: stopAll,
    };
    return cluster;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Whether a container engine answers within `ms`: tests skip (or, with LOCKSTEP_REQUIRE_DOCKER=1, fail) without one. */
export async function containerEngine(ms = 5000): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)),
    ]);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message.split('\n')[0] };
  }
}
