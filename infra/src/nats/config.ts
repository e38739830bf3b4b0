import { routeUrl, type RouteLogin } from './route.ts';

/**
 * The configuration of one pod's nats-server. With more than one pod the
 * servers form a cluster; the route between two pods' servers stands for the
 * data-center network (DCN) between the pods, so every cross-pod gradient
 * exchange crosses it.
 *
 * No server opens any port but its client port, (pods only) its route port
 * and, when given `monitorPort`, nats-server's HTTP monitoring port: no leaf
 * node, gateway, websocket or MQTT port. The monitoring port is read-only (it
 * answers GET /varz, /connz, /routez, /healthz... and changes nothing) and
 * listens on the same interface as the client port: loopback on a developer
 * machine, the container's own networks (never published) in containers.
 */
export interface NatsServerConfig {
  pod: number;
  /** Client port, and the interface it listens on. */
  port: number;
  host?: string;
  /** Cluster (route) port of this server, and the route ports of the other pods' servers. */
  clusterPort: number;
  routes: { host?: string; port: number }[];
  maxPayload?: number;
  /** Do not gossip this server's route address: with a DCN proxy between pods, servers must not dial each other around it. */
  noAdvertise?: boolean;
  /** Users and what each may publish and subscribe to; with any, a connection without credentials is refused. */
  users?: NatsUser[];
  /** nats-server's HTTP monitoring port (read-only: /routez, /connz, /healthz...); none without. */
  monitorPort?: number;
  /** The route login: required at this server's route port, presented in the URLs of its routes; without, the route port admits anyone. */
  route?: RouteLogin;
  /**
   * Seconds a client may leave what the server writes it unread before the server drops it as a slow consumer
   * (default 10). A busy host process of a large pod does not read its socket for seconds at a time: see
   * `writeDeadlineSeconds`.
   */
  writeDeadlineS?: number;
}

/**
 * The write deadline for a topology's servers: 10 s, or as long as a silent actor is tolerated
 * (`heartbeat.intervalMs` x `heartbeat.misses`) when that is longer: a process too busy to read its socket for that
 * long is declared silent by the protocol anyway, and dropping its connection sooner only loses messages.
 */
export function writeDeadlineSeconds(t: { heartbeat: { intervalMs: number; misses: number } }): number {
  return Math.max(10, Math.ceil((t.heartbeat.intervalMs * t.heartbeat.misses) / 1000));
}

export interface NatsUser {
  user: string;
  password: string;
  publish: string[];
  subscribe: string[];
}

/** Seconds a server gives a client to log in (CONNECT) after it connects. */
const CLIENT_AUTH_TIMEOUT_S = 10;

/** Seconds a server gives a peer at its route port to log in: well above a slowed DCN's round trip (the chaos scenarios add 20 ms). */
const ROUTE_AUTH_TIMEOUT_S = 5;

function authorization(users: NatsUser[] | undefined): string[] {
  if (!users || users.length === 0) return [];
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
  return [
    'authorization {',
    // a client starved of CPU (a large run on a loaded machine) may take seconds to log in again after a reconnect:
    // refused at the default 2 s, twice, nats.js gives up on the connection for good
    `  timeout: ${CLIENT_AUTH_TIMEOUT_S}`,
    '  users: [',
    ...users.map(
      (u) =>
        `    { user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)}, permissions: { publish: ${list(u.publish)}, subscribe: ${list(u.subscribe)} } }`,
    ),
    '  ]',
    '}',
  ];
}

/**
 * The run log's server: standalone, with JetStream storing on disk under
 * `storeDir`, so the log of committed steps outlives the client (and a
 * restart of this server).
 */
export function runLogServerConfig(c: { port: number; host?: string; storeDir: string; users?: NatsUser[]; monitorPort?: number }): string {
  return [
    'server_name: lockstep-runlog',
    `listen: ${c.host ?? '127.0.0.1'}:${c.port}`,
    ...(c.monitorPort === undefined ? [] : [`http: ${c.host ?? '127.0.0.1'}:${c.monitorPort}`]),
    'ping_interval: "5s"',
    `jetstream { store_dir: ${JSON.stringify(c.storeDir)}, max_memory_store: 64MB, max_file_store: 1GB }`,
    ...authorization(c.users),
    '',
  ].join('\n');
}

export function natsConfig(c: NatsServerConfig): string {
  const host = c.host ?? '127.0.0.1';
  const lines = [
    `server_name: lockstep-pod-${c.pod}`,
    `listen: ${host}:${c.port}`,
    ...(c.monitorPort === undefined ? [] : [`http: ${host}:${c.monitorPort}`]),
    `max_payload: ${c.maxPayload ?? 1048576}`,
    // no system account: its events (connections, server stats) would cross the route, which carries the run's messages only
    'no_sys_acc: true',
    'ping_interval: "5s"',
    `write_deadline: "${c.writeDeadlineS ?? 10}s"`,
  ];
  if (c.routes.length > 0 || c.noAdvertise) {
    lines.push(
      'cluster {',
      '  name: lockstep',
      `  listen: ${host}:${c.clusterPort}`,
      ...(c.route
        ? [
            `  authorization { user: ${JSON.stringify(c.route.user)}, password: ${JSON.stringify(c.route.password)}, timeout: ${ROUTE_AUTH_TIMEOUT_S} }`,
          ]
        : []),
      `  routes: [${c.routes.map((r) => routeUrl(r.host ?? '127.0.0.1', r.port, c.route)).join(', ')}]`,
      ...(c.noAdvertise ? ['  no_advertise: true'] : []),
      '}',
    );
  }
  lines.push(...authorization(c.users));
  return `${lines.join('\n')}\n`;
}
