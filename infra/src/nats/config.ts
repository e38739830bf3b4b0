/**
 * The configuration of one pod's nats-server. With more than one pod the
 * servers form a cluster; the route between two pods' servers stands for the
 * data-center network (DCN) between the pods, so every cross-pod gradient
 * exchange crosses it.
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
}

/**
 * The run log's server: standalone, with JetStream storing on disk under
 * `storeDir`, so the log of committed steps outlives the client (and a
 * restart of this server).
 */
export function runLogServerConfig(c: { port: number; host?: string; storeDir: string }): string {
  return [
    'server_name: lockstep-runlog',
    `listen: ${c.host ?? '127.0.0.1'}:${c.port}`,
    'ping_interval: "5s"',
    `jetstream { store_dir: ${JSON.stringify(c.storeDir)}, max_memory_store: 64MB, max_file_store: 1GB }`,
    '',
  ].join('\n');
}

export function natsConfig(c: NatsServerConfig): string {
  const host = c.host ?? '127.0.0.1';
  const lines = [
    `server_name: lockstep-pod-${c.pod}`,
    `listen: ${host}:${c.port}`,
    `max_payload: ${c.maxPayload ?? 1048576}`,
    'ping_interval: "5s"',
    'write_deadline: "10s"',
  ];
  if (c.routes.length > 0 || c.noAdvertise) {
    lines.push(
      'cluster {',
      '  name: lockstep',
      `  listen: ${host}:${c.clusterPort}`,
      `  routes: [${c.routes.map((r) => `nats-route://${r.host ?? '127.0.0.1'}:${r.port}`).join(', ')}]`,
      ...(c.noAdvertise ? ['  no_advertise: true'] : []),
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}
