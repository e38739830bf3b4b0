import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatsUnavailable } from './errors.ts';

/**
 * A NATS connection with failure detection in seconds, not minutes (nats.js
 * pings every 2 minutes by default). Gives up with NatsUnavailable after
 * `timeoutMs` at start.
 */
export async function connectNats(opts: {
  servers: string | string[];
  name: string;
  log: Logger;
  timeoutMs?: number;
  user?: string;
  pass?: string;
}): Promise<NatsConnection> {
  const servers = Array.isArray(opts.servers) ? opts.servers : opts.servers.split(',');
  const until = Date.now() + (opts.timeoutMs ?? 15_000);
  let lastError: unknown;
  while (Date.now() < until) {
    try {
      const nc = await connect({
        servers,
        name: opts.name,
        pingInterval: 2_000,
        maxPingOut: 3,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: 2_000,
        user: opts.user,
        pass: opts.pass,
      });
      void (async () => {
        for await (const s of nc.status()) opts.log.debug({ status: s.type }, 'nats status');
      })().catch(() => {});
      return nc;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new NatsUnavailable(
    `${opts.name}: cannot connect to NATS at ${servers.join(', ')} within ${opts.timeoutMs ?? 15_000} ms: ${(lastError as Error)?.message ?? 'no answer'}`,
    { cause: lastError },
  );
}
