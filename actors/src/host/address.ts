import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Topology } from '@lockstep/topology';

/** Where a host actor lives: its connection, its run and its place (pod, host) in the topology. */
export interface HostAddress {
  nc: NatsConnection;
  topology: Topology;
  runId: string;
  pod: number;
  host: number;
  log: Logger;
}
