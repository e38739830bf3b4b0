import { connect as tcpConnect } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatsUnavailable } from './errors.ts';

/** How often a connection away from its own server checks whether that server is back (ms). */
export const HOME_PROBE_MS = 1000;

/**
 * A NATS connection with failure detection in seconds, not minutes (nats.js
 * pings every 2 minutes by default). Gives up with NatsUnavailable after
 * `timeoutMs` at start.
 *
 * `servers` lists the process's own server first (its pod's: the route between
 * the pods' servers stands for the DCN, so where a process connects decides
 * which messages cross it). The connection uses them in that order, never
 * shuffled and never adding servers the cluster gossips: it fails over to the
 * next only while its own is down, and comes back once its own answers again
 * (`stayHome`).
 */
export async function connectNats(opts: {
  servers: string | string[];
  name: string;
  log: Logger;
  timeoutMs?: number;
  user?: string;
  pass?: string;
  /**
   * Ping the server every `pingIntervalMs` (default 2000) and call the connection stale after `maxPingOut` unanswered
   * (default 3). A process of a large run on a loaded machine may not read its socket for many seconds: see `pingFor`.
   */
  pingIntervalMs?: number;
  maxPingOut?: number;
}): Promise<NatsConnection> {
  const servers = Array.isArray(opts.servers) ? opts.servers : opts.servers.split(',');
  const until = Date.now() + (opts.timeoutMs ?? 15_000);
  let lastError: unknown;
  while (Date.now() < until) {
    try {
      const nc = await connect({
        servers,
        name: opts.name,
        pingInterval: opts.pingIntervalMs ?? 2_000,
        maxPingOut: opts.maxPingOut ?? 3,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: 2_000,
        noRandomize: true,
        ignoreClusterUpdates: true,
        // a login refused twice (a CPU-starved process too slow to log in again after a reconnect) must not end the
        // connection for good: keep reconnecting
        ignoreAuthErrorAbort: true,
        user: opts.user,
        pass: opts.pass,
      });
      void (async () => {
        for await (const s of nc.status()) opts.log.debug({ status: s.type }, 'nats status');
      })().catch(() => {});
      if (servers.length > 1) stayHome(nc, servers[0], opts.log);
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

/**
 * A role's pings for its topology: every 2 s, or every heartbeat interval when that is longer, and stale after as
 * many unanswered as a silent actor's heartbeats are tolerated (at least 3): a connection is not given up on sooner
 * than the protocol gives up on its actors (reconnecting loses what is in flight).
 */
export function pingFor(t: { heartbeat: { intervalMs: number; misses: number } }): { pingIntervalMs: number; maxPingOut: number } {
  return { pingIntervalMs: Math.max(2_000, t.heartbeat.intervalMs), maxPingOut: Math.max(3, t.heartbeat.misses) };
}

/** `host:port` of a server URL (`nats://127.0.0.1:4222`, `nats-0:4222`, `nats-0`), as nats.js names the server it is on. */
export function serverAddress(url: string): { host: string; port: number } {
  const u = new URL(url.includes('://') ? url : `nats://${url}`);
  return { host: u.hostname, port: u.port ? Number(u.port) : 4222 };
}

/** Whether something accepts TCP connections at `host:port` within `ms`. */
function answers(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host, port, timeout: ms });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.once('timeout', () => done(false));
  });
}

/**
 * Brings `nc` back to its own server `home` after a failover: nats.js stays on
 * the server it failed over to. While it is on another, `home` is probed every
 * HOME_PROBE_MS; once it accepts connections the connection is moved back
 * (`nc.reconnect()`, which tries the servers in order again: as with any
 * reconnect, messages in flight may be lost, and the protocol resends).
 */
export function stayHome(nc: NatsConnection, home: string, log: Logger): void {
  const { host, port } = serverAddress(home);
  const at = `${host}:${port}`;
  let probing = false;
  const timer = setInterval(() => {
    if (nc.isClosed()) return clearInterval(timer);
    const on = nc.getServer();
    if (probing || on === '' || on === at) return;
    probing = true;
    void answers(host, port, HOME_PROBE_MS)
      .then(async (back) => {
        if (!back || nc.isClosed() || nc.isDraining() || nc.getServer() === at) return;
        log.info({ from: on, to: at }, 'own NATS server is back: moving the connection home');
        await nc.reconnect();
      })
      .catch((err: unknown) => log.debug({ err }, 'moving the connection home failed; trying again'))
      .finally(() => {
        probing = false;
      });
  }, HOME_PROBE_MS);
  timer.unref();
  void nc.closed().then(() => clearInterval(timer));
}
