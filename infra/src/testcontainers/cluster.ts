import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { GenericContainer, Network, Wait, getContainerRuntimeClient, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { z } from 'zod';
import {
  describeIssues,
  InvalidInput,
  InvalidTopology,
  isPresetName,
  parseTopology,
  preset,
  presetNames,
  RunId,
  type Topology,
} from '@lockstep/topology';
import { newCredentials, type Credentials, type Login } from '../nats/users.ts';
import { ImageRef, imageDefaults } from './images.ts';
import { clusterIdentities, clusterPlan, containerName, identityOf, NATS_PORT, planEntry, watchArgs, type ClusterPlan } from '../plan.ts';

/**
 * What `startLockstepCluster` (and the `LockstepCluster` builder) starts.
 * Checked when the cluster starts: a bad field throws InvalidInput naming it
 * (a bad topology object, InvalidTopology).
 */
export const ClusterOptions = z
  .object({
    /** A preset name (tiny, demo), which the role containers pass on their command line; or a topology, copied into each. */
    topology: z.union([
      z.string().min(1),
      z.custom<Topology>((v) => typeof v === 'object' && v !== null, 'must be a preset name or a topology object'),
    ]),
    /** Steps the client runs, 1 to 1,000,000. */
    steps: z.number().int().min(1, 'must be >= 1').max(1_000_000, 'must be <= 1000000'),
    /** The run's id: its NATS subjects are lockstep.<runId>.…; default `tc`. */
    runId: RunId.optional(),
    /** The role image and the nats-server image (default $LOCKSTEP_IMAGE and $LOCKSTEP_NATS_IMAGE, else lockstep:dev and lockstep-nats:2.9.10); see buildImages. */
    image: ImageRef.optional(),
    natsImage: ImageRef.optional(),
    /** Start every container but the client; call startClient() (after subscribing, say). */
    holdClient: z.boolean().optional(),
    /**
     * A directory on this machine (made when missing) to keep the run's record in, as `lockstep train` leaves one:
     * summary.json, steps.jsonl, events.jsonl, trace.json (and run.json, topology.json). A recorder container
     * (`lockstep watch`, as the observer) writes it as the run goes, from the stream files the role containers append
     * their run events to; the faults injected through the handle are recorded too. Without, no record is kept.
     */
    recordDir: z.string().min(1).max(4096).optional(),
  })
  .strict();
export type ClusterOptions = z.input<typeof ClusterOptions>;

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

/** Whom a test connects as: the observer, an identity (`pod-0`, `host-0-0..1`, `client`), or the identity of an actor (`host/0/1`). */
export type ClusterLogin = string;

/**
 * A running lockstep cluster in containers (see `startLockstepCluster`).
 * Faults and connections name processes as scenarios do: `client`, `pod/<p>`,
 * `host/<p>/<h>` (the container running that host, also when hosts are
 * grouped), `nats/<p>` (pod p's nats-server); container names (`host-0-1`,
 * `nats-log`) work too.
 */
export interface StartedLockstepCluster extends AsyncDisposable {
  runId: string;
  /** What runs where: the cluster plan the containers render. */
  plan: ClusterPlan;
  network: Record<string, StartedNetwork>;
  nats: StartedTestContainer[];
  runLog: StartedTestContainer;
  containers: Record<string, StartedTestContainer>;
  /** The users the servers know (one per process, its identity, and the observer) and the route login the pods' servers require of each other. */
  credentials: Credentials & { observer: Login };
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
  /** The client's exit code, its summary and the steps it committed, once it exits (or rejects after `ms`, default 300 s). */
  waitForClient(ms?: number): Promise<ClientSummary>;
  /** Container faults, by target (see above): kill is SIGKILL, pause and unpause freeze and thaw it (cgroup freezer), disconnect and connect take it off a network (`dcn`, `ctl`, `pod-<p>`) and back. */
  faults: {
    kill(name: string): Promise<void>;
    start(name: string): Promise<void>;
    pause(name: string): Promise<void>;
    unpause(name: string): Promise<void>;
    restart(name: string): Promise<void>;
    disconnect(name: string, network: string): Promise<void>;
    connect(name: string, network: string): Promise<void>;
  };
  /** Where the run's record goes (`recordDir`, absolute), or undefined when none is kept. */
  recordDir: string | undefined;
  /** The recorder's container (`lockstep watch`, which writes the record), with `recordDir`. */
  recorder: StartedTestContainer | undefined;
  /** Stop every container and network it started and close its connections; `[Symbol.asyncDispose]` does the same. */
  stop(): Promise<void>;
}

/** One container of the rendering: a nats-server or a role process. */
export interface ContainerSpec {
  /** The plan's name (the key in `containers`), and the name other containers reach it by. */
  name: string;
  alias: string;
  kind: 'server' | 'role';
  image: string;
  command: string[];
  env: Record<string, string>;
  /** The first is the one it starts on; it joins the others after. */
  networks: string[];
  /** Files copied in; a server's config holds passwords, so only its owner (the container's root) may read it. */
  files: { content: string; target: string; mode?: number }[];
  /** Whether the checkpoint directory is mounted at /ckpt. */
  checkpoints: boolean;
  /** Ports published to the test (the servers' client port). */
  exposed: number[];
}

const CONF = '/etc/lockstep/nats.conf';
const TOPOLOGY_FILE = '/etc/lockstep/topology.json';
const RESTART_MARKER = '/tmp/lockstep-started';
/** Where role containers append their run events (a directory of this machine, bind-mounted) and where the recorder writes the record. */
const STREAMS = '/run/lockstep/streams';
const RECORD = '/run/lockstep/record';
/** How long `waitForClient` waits for the recorder to finish the record after the client exits. */
const RECORD_CLOSE_MS = 15_000;

/**
 * The containers of a cluster plan (made with the `containers` placement), in
 * the order they start: the servers, then the pod schedulers, the host
 * processes and the client. With `topology`, its JSON goes into every role
 * container at the path the plan's processes were given.
 */
export function clusterContainers(
  plan: ClusterPlan,
  o: { image: string; natsImage: string; topology?: Topology; streams?: boolean },
): ContainerSpec[] {
  const servers = plan.servers.map(
    (s): ContainerSpec => ({
      name: s.name,
      alias: containerName(s.name),
      kind: 'server',
      image: o.natsImage,
      command: ['-c', CONF],
      env: {},
      networks: s.networks,
      files: [{ content: s.config, target: CONF, mode: 0o600 }],
      checkpoints: false,
      exposed: [s.port],
    }),
  );
  const topologyFile = o.topology ? [{ content: `${JSON.stringify(o.topology, null, 2)}\n`, target: TOPOLOGY_FILE }] : [];
  const roles = plan.processes.map(
    (p): ContainerSpec => ({
      name: p.name,
      alias: containerName(p.name),
      kind: 'role',
      image: o.image,
      command: p.args,
      // a restarted container finds the marker of its first start and rejoins
      env: {
        ...p.env,
        LOCKSTEP_RESTART_MARKER: RESTART_MARKER,
        // its run events (the client's lines too) for the recorder: host-0-0..1 writes host-0-0-to-1.jsonl
        ...(o.streams ? { LOCKSTEP_STREAM_FILE: `${STREAMS}/${containerName(p.name)}.jsonl` } : {}),
      },
      networks: p.networks,
      files: topologyFile,
      checkpoints: p.checkpoints,
      exposed: [],
    }),
  );
  return [...servers, ...roles];
}

/**
 * A lockstep cluster in containers, for tests (yours or lockstep's): the
 * topology's cluster plan (`clusterPlan`) as containers, one nats-server per
 * pod (clustered over a `dcn` network standing for the data-center network), a
 * JetStream server for the run log, one container per pod scheduler, per host
 * process (`hostsPerProcess` hosts each) and the client. The images come from
 * `buildImages` (or a checkout's scripts/images.sh; no registry needed). The
 * returned handle waits for the client, hands back NATS connections to the
 * pods' servers and injects container faults by target (`host/0/1`, as
 * scenarios name it).
 *
 * Every process connects as its own NATS user, allowed to publish only as the
 * actors it runs (as in the launcher's runs); the handle's connections log in
 * as `observer`, which may watch every subject of the run and publish nothing,
 * or as a process's identity (`pod-0`, `host-1-0`, or the actor `host/1/0`).
 *
 *   const c = await startLockstepCluster({ topology: 'tiny', steps: 20 });
 *   const nc = await c.connect(0);          // watch lockstep.<run>.> on pod 0's server
 *   const r = await c.waitForClient();      // { exitCode, summary, steps }
 *   await c.stop();
 *
 * Throws InvalidInput (a bad option, named), InvalidTopology, or the
 * engine's error when a container does not start (having stopped what it
 * started).
 */
export async function startLockstepCluster(options: ClusterOptions): Promise<StartedLockstepCluster> {
  const parsed = ClusterOptions.safeParse(options);
  if (!parsed.success) throw new InvalidInput('lockstep cluster options', describeIssues(parsed.error));
  const o = parsed.data;
  let topology: Topology;
  if (typeof o.topology === 'string') {
    if (!isPresetName(o.topology))
      throw new InvalidTopology('startLockstepCluster', [
        `topology: ${o.topology} is not a preset (${presetNames.join(', ')}); pass a Topology object (parseTopology) instead`,
      ]);
    topology = preset(o.topology);
  } else topology = parseTopology(o.topology, 'startLockstepCluster topology');
  const defaults = o.image && o.natsImage ? undefined : imageDefaults();
  const image = o.image ?? defaults!.image;
  const natsImage = o.natsImage ?? defaults!.natsImage;
  const runId = o.runId ?? 'tc';
  const credentials = {
    ...newCredentials(clusterIdentities(topology)),
    observer: { user: 'observer', password: randomBytes(18).toString('base64url') },
  };
  const plan = clusterPlan(topology, {
    runId,
    steps: o.steps,
    topologyArg: typeof o.topology === 'string' ? o.topology : TOPOLOGY_FILE,
    credentials,
    observer: credentials.observer,
    place: { kind: 'containers' },
  });
  const recordDir = o.recordDir === undefined ? undefined : resolve(o.recordDir);
  const specs = clusterContainers(plan, {
    image,
    natsImage,
    topology: typeof o.topology === 'string' ? undefined : topology,
    streams: recordDir !== undefined,
  });
  const started: { stop: () => Promise<unknown> }[] = [];
  const network: Record<string, StartedNetwork> = {};
  const containers: Record<string, StartedTestContainer> = {};
  const runtime = await getContainerRuntimeClient();
  const connections: NatsConnection[] = [];
  const lines: string[] = [];
  const stepsSeen: ClientSummary['steps'] = [];
  let summary: ClientSummary['summary'];
  // stops each thing once, newest first, also when called again (stop() then dispose)
  let ckpt: string | undefined; // the checkpoint directory the hosts and the client share, removed with the containers
  let streams: string | undefined; // the role containers' stream files, which the recorder reads; removed with them
  let recorder: StartedTestContainer | undefined;
  const stopAll = async () => {
    for (const nc of connections.splice(0)) await nc.close().catch(() => {});
    // the recorder first, with time to read the streams a last time and close the record (SIGTERM, then 10 s)
    if (recorder) await recorder.stop({ timeout: 10_000 }).catch(() => {});
    for (const s of started.splice(0).reverse()) await s.stop().catch(() => {});
    for (const d of [ckpt, streams])
      try {
        if (d) rmSync(d, { recursive: true, force: true, maxRetries: 2 });
      } catch {
        // files the containers' root wrote, which a user who is not root may not remove: left in the temp directory
      }
    ckpt = undefined;
    streams = undefined;
  };
  /** A fault injected through the handle, in the record (the recorder reads faults.jsonl with the processes' streams). */
  const noteFault = (target: string, action: string) => {
    if (!streams) return;
    const at = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const actor = /^[a-z][a-z0-9/-]{0,99}$/.test(target) ? target : 'testcontainers';
    appendFileSync(join(streams, 'faults.jsonl'), `${JSON.stringify({ kind: 'fault', actor, at, action, detail: target })}\n`);
  };
  try {
    for (const n of plan.networks) {
      network[n] = await new Network().start();
      started.push(network[n]);
    }
    ckpt = mkdtempSync(join(tmpdir(), 'lockstep-tc-ckpt-'));
    chmodSync(ckpt, 0o777);
    if (recordDir !== undefined) {
      streams = mkdtempSync(join(tmpdir(), 'lockstep-tc-streams-'));
      chmodSync(streams, 0o777);
      mkdirSync(recordDir, { recursive: true });
    }
    // each container starts on its first network and joins the others under the same alias
    const start = async (spec: ContainerSpec) => {
      const [first, ...rest] = spec.networks;
      let g = new GenericContainer(spec.image)
        .withNetwork(network[first])
        .withNetworkAliases(spec.alias)
        .withEnvironment(spec.env)
        .withCommand(spec.command);
      if (spec.files.length) g = g.withCopyContentToContainer(spec.files);
      const mounts = [
        ...(spec.checkpoints && ckpt ? [{ source: ckpt, target: '/ckpt' }] : []),
        ...(spec.kind === 'role' && streams ? [{ source: streams, target: STREAMS }] : []),
      ];
      if (mounts.length) g = g.withBindMounts(mounts);
      if (spec.exposed.length) g = g.withExposedPorts(...spec.exposed);
      if (spec.kind === 'server') g = g.withWaitStrategy(Wait.forLogMessage(/Server is ready/)).withStartupTimeout(60_000);
      const c = await g.start();
      started.push(c);
      containers[spec.name] = c;
      for (const n of rest)
        await runtime.container.connectToNetwork(
          runtime.container.getById(c.getId()),
          runtime.network.getById(network[n].getId()) as never,
          [spec.alias],
        );
      return c;
    };
    const clientSpec = specs.find((x) => x.name === 'client')!;
    for (const spec of specs) if (spec !== clientSpec) await start(spec);
    const nats = plan.servers.filter((s) => s.role === 'pod').map((s) => containers[s.name]);
    const runLog = containers['nats-log'];
    if (recordDir !== undefined && streams) {
      // the recorder: `lockstep watch` as the observer, on the network that reaches every server, writing the record
      const topologyArg = typeof o.topology === 'string' ? o.topology : TOPOLOGY_FILE;
      let g = new GenericContainer(image)
        .withNetwork(network.ctl ?? network[plan.networks[0]])
        .withNetworkAliases('recorder')
        .withEnvironment({ LOCKSTEP_NATS_USER: credentials.observer.user, LOCKSTEP_NATS_PASS: credentials.observer.password })
        .withCommand([
          ...watchArgs(plan, { runId, topology: topologyArg, steps: o.steps, ui: '0.0.0.0:7373' }),
          '--streams',
          STREAMS,
          '--record-dir',
          RECORD,
        ])
        .withBindMounts([
          { source: streams, target: STREAMS, mode: 'ro' },
          { source: recordDir, target: RECORD },
        ])
        .withExposedPorts(7373)
        .withWaitStrategy(Wait.forLogMessage(/status page at/))
        .withStartupTimeout(60_000);
      if (typeof o.topology !== 'string')
        g = g.withCopyContentToContainer([{ content: `${JSON.stringify(topology, null, 2)}\n`, target: TOPOLOGY_FILE }]);
      recorder = await g.start();
      started.push(recorder);
    }

    const startClient = async () => {
      if (containers.client) throw new Error('the client is already started');
      const client = await start(clientSpec);
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

    const containerOf = (name: string) => {
      const entry = planEntry(plan, name);
      const c = entry && containers[entry.name];
      if (!entry || !c)
        throw new Error(
          `no container ${name}: name client, pod/<p>, host/<p>/<h> or nats/<p> (as scenarios do), or a container (${Object.keys(containers).map(containerName).join(', ')})`,
        );
      return { c, alias: containerName(entry.name) };
    };
    const byName = (name: string) => runtime.container.getById(containerOf(name).c.getId());
    const netOf = (name: string) => {
      if (!network[name]) throw new Error(`no network ${name} (have ${plan.networks.join(', ')})`);
      return runtime.network.getById(network[name].getId()) as unknown as {
        disconnect(o: object): Promise<void>;
        connect(o: object): Promise<void>;
      };
    };
    const natsOptions = async (pod: number, as: ClusterLogin = 'observer'): Promise<ConnectionOptions> => {
      const c = nats[pod];
      if (!c) throw new Error(`no nats-server for pod ${pod} (the cluster has ${nats.length})`);
      const info = (await runtime.container.getById(c.getId()).inspect()) as {
        NetworkSettings: { Ports: Record<string, { HostPort: string }[] | null> };
      };
      const bound = info.NetworkSettings.Ports[`${NATS_PORT}/tcp`]?.[0]?.HostPort;
      if (!bound) throw new Error(`nats-${pod} publishes no port for ${NATS_PORT} (is it running?)`);
      const login = as === 'observer' ? credentials.observer : credentials.users[identityOf(topology, as) ?? as];
      if (!login) throw new Error(`no login ${as} (have observer, ${Object.keys(credentials.users).join(', ')}, or an actor's name)`);
      return { servers: `${c.getHost()}:${bound}`, user: login.user, pass: login.password, name: `test-${as}` };
    };
    const cluster: StartedLockstepCluster = {
      runId,
      plan,
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
        const waited = (await withDeadline(
          byName('client').wait(),
          ms,
          () => `client did not exit within ${ms} ms; its last lines:\n${lines.slice(-10).join('\n')}`,
        )) as {
          StatusCode: number;
        };
        await new Promise((r) => setTimeout(r, 200)); // the last log lines
        // the record is whole once the recorder wrote summary.json (it reads the client's summary from its stream)
        if (recordDir !== undefined) {
          const until = Date.now() + RECORD_CLOSE_MS;
          while (!existsSync(join(recordDir, 'summary.json')) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        }
        return { exitCode: waited.StatusCode, summary, steps: stepsSeen };
      },
      faults: {
        kill: async (name) => {
          await byName(name).kill({ signal: 'SIGKILL' });
          noteFault(name, 'kill');
        },
        start: async (name) => {
          await byName(name).start();
          noteFault(name, 'start');
        },
        pause: async (name) => {
          await byName(name).pause();
          noteFault(name, 'pause');
        },
        unpause: async (name) => {
          await byName(name).unpause();
          noteFault(name, 'unpause');
        },
        restart: async (name) => {
          await byName(name).restart({ t: 0 });
          noteFault(name, 'restart');
        },
        disconnect: async (name, net) => {
          await netOf(net).disconnect({ Container: containerOf(name).c.getId(), Force: true });
          noteFault(name, `disconnect ${net}`.slice(0, 40));
        },
        connect: async (name, net) => {
          const { c, alias } = containerOf(name);
          await netOf(net).connect({ Container: c.getId(), EndpointConfig: { Aliases: [alias] } });
          noteFault(name, `connect ${net}`.slice(0, 40));
        },
      },
      recordDir,
      recorder,
      stop: stopAll,
      [Symbol.asyncDispose]: stopAll,
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
    await withDeadline(getContainerRuntimeClient(), ms, () => `no answer within ${ms} ms`);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message.split('\n')[0] };
  }
}

/** `p`, or a rejection with `message()` after `ms`; the timer is cleared either way, so it keeps no process alive. */
async function withDeadline<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message())), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
