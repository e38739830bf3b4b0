import { join } from 'node:path';
import { actorNames, type Role, type Topology } from '@lockstep/topology';
import { natsConfig, runLogServerConfig, writeDeadlineSeconds } from './nats/config.ts';
import { natsUsers, type Credentials, type Identity, type Login } from './nats/users.ts';

/**
 * One description of a cluster, which the launcher (local processes), `lockstep
 * compose` (a compose file) and the testcontainers helper (containers) each
 * render: one nats-server per pod, the servers joined by routes (the route
 * stands for the data-center network, DCN, between pods), the run log's
 * JetStream server, and every role process (a pod scheduler per pod, host
 * processes of `hostsPerProcess` hosts each, the client) with what it runs,
 * where it connects and as whom: each process is a NATS identity of its own,
 * allowed to publish only as the actors it runs (`clusterIdentities`).
 *
 *   const plan = clusterPlan(preset('demo'), { runId: 'demo', steps: 100, topologyArg: 'demo', place: { kind: 'containers' } });
 *   plan.servers.map((s) => s.name);   // nats-0, nats-1, nats-log
 *   plan.processes.map((p) => p.name); // pod-0, pod-1, host-0-0 ... host-1-3, client
 *
 * Pure: no files, no ports, no processes. What a deployment decides at run
 * time (the launcher's free ports, its DCN proxies) comes in as options.
 */
export interface ClusterPlan {
  runId: string;
  /** The topology's name. */
  topology: string;
  /** Every network of the layout: `dcn` joins the pods' servers, `ctl` the client and the run log's server, `pod-<p>` a pod's server and processes. */
  networks: string[];
  /** The pods' servers in pod order, then the run log's. */
  servers: ServerPlan[];
  /** Pod schedulers in pod order, host processes pod by pod, the client last. */
  processes: ProcessPlan[];
}

export interface ServerPlan {
  /** nats-<pod>, or nats-log for the run log's server. */
  name: string;
  role: 'pod' | 'runlog';
  /** The pod it serves; null for the run log's server. */
  pod: number | null;
  /** How role processes reach it. */
  url: string;
  /** Its client port, and its route port (null for the run log's server, which joins no cluster). */
  port: number;
  clusterPort: number | null;
  /**
   * nats-server's read-only HTTP monitoring endpoint (`http://127.0.0.1:<port>` locally, `http://nats-0:8222` in
   * containers, on their networks only), for /routez, /connz and /healthz; null where the placement gave no port.
   */
  monitor: string | null;
  /** The pods whose servers it dials: its routes over the DCN. */
  routes: number[];
  networks: string[];
  /** Its nats-server configuration file, as text. */
  config: string;
}

export interface ProcessPlan {
  /** pod-<p>, host-<p>-<h> (host-<p>-<first>..<last> for a group), client. */
  name: string;
  role: Role;
  /** The pod it belongs to; null for the client. */
  pod: number | null;
  /** The hosts it runs (host processes only). */
  hosts: number[];
  /** The servers it connects to (names), the one it uses first first; the client's list ends with the run log's. */
  servers: string[];
  /** `lockstep` arguments: the role, then its flags. */
  args: string[];
  /** The actors it runs (`client`, `pod/1`, `host/1/0`...): what its NATS user may publish as. */
  actors: string[];
  /** Its environment: its NATS user (named after the process) and password. */
  env: Record<string, string>;
  networks: string[];
  /** Whether it reads or writes the checkpoint directory (hosts write their shards, the client restores). */
  checkpoints: boolean;
}

/** Free ports the launcher picked on 127.0.0.1: each pod's server's client and route port, and the run log's server's port. */
export interface LocalPorts {
  pods: { port: number; clusterPort: number; monitorPort?: number }[];
  runLog: number;
  runLogMonitor?: number;
}

/** A DCN fault proxy on the route from pod `from`'s server to pod `to`'s, listening on `port`. */
export interface DcnRoute {
  from: number;
  to: number;
  port: number;
}

/**
 * Where the cluster runs. In containers every server is a host named after
 * it, on the standard ports, with checkpoints under /ckpt and the run log
 * under /data; a pod's processes sit on the pod's network and reach only their
 * pod's server. Locally everything is on 127.0.0.1 at the given ports, with
 * files under `dir`; a process can reach every server, so it lists the other
 * pods' servers after its own to fail over to while its own is down. With
 * `dcn`, each pair of pods' servers is routed through a proxy (the lower pod
 * dials) and no server advertises its route address, so none dials around it.
 */
export type Placement = { kind: 'containers' } | { kind: 'local'; dir: string; ports: LocalPorts; dcn?: DcnRoute[] };

export interface PlanOptions {
  runId: string;
  steps: number;
  /** What role processes pass as --topology: a preset name, or the path of the topology file where they run. */
  topologyArg: string;
  place: Placement;
  /** A NATS user per identity (`clusterIdentities`), and the route login the pods' servers require of each other; without, the servers admit anyone. */
  credentials?: Credentials;
  /** A user the pods' servers also know, who may watch the run and publish nothing (tests log in as it). */
  observer?: Login;
  /** Passed to every role process as --log-level. */
  logLevel?: string;
}

/** The client and route ports of a server in a container. */
export const NATS_PORT = 4222;
export const ROUTE_PORT = 6222;
/** nats-server's monitoring port in a container (on the container's networks; never published). */
export const MONITOR_PORT = 8222;
const CONTAINER_CKPT_DIR = '/ckpt';
const CONTAINER_RUNLOG_DIR = '/data';

/** Host processes: hosts of one pod grouped `hostsPerProcess` to a process (5 hosts, 3 a process: 0..2 and 3..4). */
export function hostGroups(t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>): { pod: number; hosts: number[] }[] {
  const groups: { pod: number; hosts: number[] }[] = [];
  for (let pod = 0; pod < t.pods; pod++) {
    for (let h = 0; h < t.hostsPerPod; h += t.hostsPerProcess) {
      groups.push({ pod, hosts: Array.from({ length: Math.min(t.hostsPerProcess, t.hostsPerPod - h) }, (_, i) => h + i) });
    }
  }
  return groups;
}

/** The name of a host process: host-<pod>-<host>, or host-<pod>-<first>..<last> for a group. */
export function hostProcessName(g: { pod: number; hosts: number[] }): string {
  return `host-${g.pod}-${g.hosts.length === 1 ? g.hosts[0] : `${g.hosts[0]}..${g.hosts.at(-1)}`}`;
}

/** A plan name as a container, service and DNS name: `..` is no DNS label, so host-0-0..2 is host-0-0-to-2. */
export function containerName(name: string): string {
  return name.replace('..', '-to-');
}

/**
 * Who connects to the pods' servers: every process of the cluster, each as its
 * own NATS identity, named after the process (pod-<p>, host-<p>-<h> or
 * host-<p>-<first>..<last>, client), speaking for the actors it runs.
 */
export function clusterIdentities(t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>): Identity[] {
  return [
    ...Array.from({ length: t.pods }, (_, p) => ({ name: `pod-${p}`, actors: [actorNames.pod(p)] })),
    ...hostGroups(t).map((g) => ({ name: hostProcessName(g), actors: g.hosts.map((h) => actorNames.host(g.pod, h)) })),
    { name: 'client', actors: [actorNames.client] },
  ];
}

/** The identity that speaks for `actor` (`host/0/1`): the process that runs it. */
export function identityOf(t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>, actor: string): string | undefined {
  return clusterIdentities(t).find((i) => i.actors.includes(actor))?.name;
}

/**
 * The server or process a name stands for: a fault target as scenarios name
 * it (`client`, `pod/<p>`, `host/<p>/<h>`: the process that runs that host,
 * also when hosts are grouped; `nats/<p>`: pod p's nats-server), its plan
 * name (`nats-log`, `host-0-0..1`), its container name (`host-0-0-to-1`), or
 * host-<pod>-<host> for the process that runs that host.
 */
export function planEntry(plan: ClusterPlan, name: string): ServerPlan | ProcessPlan | undefined {
  const all = [...plan.servers, ...plan.processes];
  const exact = all.find((x) => x.name === name || containerName(x.name) === name);
  if (exact) return exact;
  const target = /^(pod|nats)\/(\d+)$/.exec(name);
  if (target) return all.find((x) => x.name === `${target[1]}-${Number(target[2])}`);
  const host = /^host-(\d+)-(\d+)$/.exec(name) ?? /^host\/(\d+)\/(\d+)$/.exec(name);
  if (!host) return undefined;
  return plan.processes.find((p) => p.role === 'host' && p.pod === Number(host[1]) && p.hosts.includes(Number(host[2])));
}

/** The pods' nats-servers, pod 0 first. */
export function podServers(plan: ClusterPlan): ServerPlan[] {
  return plan.servers.filter((x) => x.role === 'pod').sort((a, b) => (a.pod ?? 0) - (b.pod ?? 0));
}

/**
 * The arguments of `lockstep watch` for a cluster of `plan` (the status page and recorder service of compose and of
 * the testcontainers cluster): its run, topology (a preset or a file path inside the container), steps, the pods'
 * servers, pod 0's monitoring endpoint, and the page's address `ui` (host:port); the caller adds its own flags.
 */
export function watchArgs(plan: ClusterPlan, o: { runId: string; topology: string; steps: number; ui: string }): string[] {
  const pods = podServers(plan);
  return [
    'watch',
    '--run',
    o.runId,
    '--topology',
    o.topology,
    '--steps',
    String(o.steps),
    '--nats',
    pods.map((x) => x.url).join(','),
    ...(pods[0]?.monitor ? ['--monitor', pods[0].monitor] : []),
    '--ui',
    o.ui,
  ];
}

export function clusterPlan(t: Topology, o: PlanOptions): ClusterPlan {
  const place = o.place;
  const pods = Array.from({ length: t.pods }, (_, p) => p);
  if (place.kind === 'local' && place.ports.pods.length !== t.pods)
    throw new RangeError(`clusterPlan: ${place.ports.pods.length} port pairs for ${t.pods} pods`);
  const local = place.kind === 'local' ? place : undefined;
  const identities = clusterIdentities(t);
  const users = o.credentials && natsUsers(o.runId, o.credentials, identities, o.observer);
  const podNet = (p: number) => `pod-${p}`;

  const serverName = (p: number) => `nats-${p}`;
  const podServer = (p: number): ServerPlan => {
    const name = serverName(p);
    if (local) {
      const { port, clusterPort, monitorPort } = local.ports.pods[p];
      const proxied = local.dcn !== undefined;
      const dials = proxied
        ? local.dcn!.filter((d) => d.from === p)
        : pods.filter((q) => q !== p).map((q) => ({ to: q, port: local.ports.pods[q].clusterPort }));
      return {
        name,
        role: 'pod',
        pod: p,
        url: `nats://127.0.0.1:${port}`,
        port,
        clusterPort,
        monitor: monitorPort === undefined ? null : `http://127.0.0.1:${monitorPort}`,
        routes: dials.map((d) => d.to),
        networks: [podNet(p), 'dcn', 'ctl'],
        config: natsConfig({
          pod: p,
          port,
          clusterPort,
          monitorPort,
          routes: dials.map((d) => ({ port: d.port })),
          noAdvertise: proxied,
          users: users?.cluster,
          route: o.credentials?.route,
          writeDeadlineS: writeDeadlineSeconds(t),
        }),
      };
    }
    const others = pods.filter((q) => q !== p);
    return {
      name,
      role: 'pod',
      pod: p,
      url: `nats://${name}:${NATS_PORT}`,
      port: NATS_PORT,
      clusterPort: ROUTE_PORT,
      monitor: `http://${name}:${MONITOR_PORT}`,
      routes: others,
      networks: [podNet(p), 'dcn', 'ctl'],
      config: natsConfig({
        pod: p,
        host: '0.0.0.0',
        port: NATS_PORT,
        clusterPort: ROUTE_PORT,
        monitorPort: MONITOR_PORT,
        routes: others.map((q) => ({ host: serverName(q), port: ROUTE_PORT })),
        users: users?.cluster,
        route: o.credentials?.route,
        writeDeadlineS: writeDeadlineSeconds(t),
      }),
    };
  };
  const runLogPort = local ? local.ports.runLog : NATS_PORT;
  const runLog: ServerPlan = {
    name: 'nats-log',
    role: 'runlog',
    pod: null,
    url: local ? `nats://127.0.0.1:${runLogPort}` : `nats://nats-log:${NATS_PORT}`,
    port: runLogPort,
    clusterPort: null,
    monitor: local
      ? local.ports.runLogMonitor === undefined
        ? null
        : `http://127.0.0.1:${local.ports.runLogMonitor}`
      : `http://nats-log:${MONITOR_PORT}`,
    routes: [],
    networks: ['ctl'],
    config: runLogServerConfig({
      host: local ? undefined : '0.0.0.0',
      port: runLogPort,
      monitorPort: local ? local.ports.runLogMonitor : MONITOR_PORT,
      storeDir: local ? join(local.dir, 'jetstream') : CONTAINER_RUNLOG_DIR,
      users: users?.runLog,
    }),
  };
  const servers = [...pods.map(podServer), runLog];

  const ckptDir = local ? join(local.dir, 'checkpoints') : CONTAINER_CKPT_DIR;
  const urlOf = (name: string) => servers.find((s) => s.name === name)!.url;
  // locally a process reaches every server: its pod's first, then the others to fail over to
  const serversOf = (p: number) => (local ? [p, ...pods.filter((q) => q !== p)] : [p]).map(serverName);
  const common = (names: string[]) => [
    '--run',
    o.runId,
    '--topology',
    o.topologyArg,
    '--nats',
    names.map(urlOf).join(','),
    ...(o.logLevel ? ['--log-level', o.logLevel] : []),
  ];
  // each process logs in as its own identity (natsUsers checked that every one has a login)
  const env = (name: string): Record<string, string> => {
    const login = o.credentials?.users[name];
    return login ? { LOCKSTEP_NATS_USER: login.user, LOCKSTEP_NATS_PASS: login.password } : {};
  };
  const actorsOf = (name: string) => identities.find((i) => i.name === name)!.actors;

  const processes: ProcessPlan[] = [];
  for (const p of pods)
    processes.push({
      name: `pod-${p}`,
      role: 'pod',
      pod: p,
      hosts: [],
      servers: serversOf(p),
      args: ['pod', '--pod', String(p), ...common(serversOf(p))],
      actors: actorsOf(`pod-${p}`),
      env: env(`pod-${p}`),
      networks: [podNet(p)],
      checkpoints: false,
    });
  for (const g of hostGroups(t))
    processes.push({
      name: hostProcessName(g),
      role: 'host',
      pod: g.pod,
      hosts: g.hosts,
      servers: serversOf(g.pod),
      args: ['host', '--pod', String(g.pod), '--hosts', g.hosts.join(','), '--ckpt-dir', ckptDir, ...common(serversOf(g.pod))],
      actors: actorsOf(hostProcessName(g)),
      env: env(hostProcessName(g)),
      networks: [podNet(g.pod)],
      checkpoints: true,
    });
  const all = pods.map(serverName);
  processes.push({
    name: 'client',
    role: 'client',
    pod: null,
    hosts: [],
    servers: [...all, runLog.name],
    args: ['client', '--steps', String(o.steps), '--log-nats', runLog.url, '--ckpt-dir', ckptDir, ...common(all)],
    actors: actorsOf('client'),
    env: env('client'),
    networks: ['ctl'],
    checkpoints: true,
  });

  return { runId: o.runId, topology: t.name, networks: ['dcn', 'ctl', ...pods.map(podNet)], servers, processes };
}
