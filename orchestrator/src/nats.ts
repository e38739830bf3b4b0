import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, openSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import { DcnProxy, natsConfig, runLogServerConfig, type NatsUser } from '@lockstep/infra';
import { NatsServerMissing, ProcessExited } from './errors.ts';
import { freePort } from './ports.ts';

/** Find the nats-server binary: an explicit path, then PATH, then where Debian and manual installs put it. */
export function findNatsServer(explicit?: string): string {
  const candidates = explicit
    ? [explicit]
    : [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/bin', '/usr/bin'].map((d) =>
        join(d, 'nats-server'),
      );
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  throw new NatsServerMissing();
}

export interface NatsNode {
  pod: number;
  url: string;
  port: number;
  clusterPort: number;
  config: string;
  process: ChildProcess;
}

function waitForPort(port: number, deadlineMs: number, child: ChildProcess, name: string): Promise<void> {
  const until = Date.now() + deadlineMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null)
        return reject(new ProcessExited(`${name} exited with code ${child.exitCode} before accepting connections`));
      const sock = netConnect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > until) reject(new ProcessExited(`${name} did not accept connections on port ${port} within ${deadlineMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** Start nats-server with a config file, logging to `logFile` (also how a crashed server is restarted, on the same ports). */
export function spawnNats(bin: string, config: string, logFile: string): ChildProcess {
  const logFd = openSync(logFile, 'a');
  return spawn(bin, ['-c', config], { stdio: ['ignore', logFd, logFd] });
}

/** Start the run log's server (JetStream, on disk under `dir`/jetstream) and wait until it listens. */
export async function startRunLogServer(opts: {
  dir: string;
  bin: string;
  log: Logger;
  startupMs?: number;
  users?: NatsUser[];
}): Promise<NatsNode> {
  const port = await freePort();
  const config = join(opts.dir, 'nats-runlog.conf');
  writeFileSync(config, runLogServerConfig({ port, storeDir: join(opts.dir, 'jetstream'), users: opts.users }));
  const child = spawnNats(opts.bin, config, join(opts.dir, 'logs', 'nats-runlog.log'));
  try {
    await waitForPort(port, opts.startupMs ?? 20_000, child, 'the run log nats-server');
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  }
  opts.log.debug({ port, pid: child.pid }, 'run log nats-server started');
  return { pod: -1, url: `nats://127.0.0.1:${port}`, port, clusterPort: 0, config, process: child };
}

/** Start one nats-server per pod, clustered when there are several, and wait until each listens. */
export async function startNatsCluster(opts: {
  pods: number;
  dir: string;
  bin: string;
  log: Logger;
  startupMs?: number;
  /** Put a DcnProxy on the route of every pair of pods (pod p dials pod q > p through it); they are pushed here. */
  dcnProxies?: { from: number; to: number; proxy: DcnProxy }[];
  /** Per-role users and permissions; without, anyone may connect and say anything. */
  users?: NatsUser[];
}): Promise<NatsNode[]> {
  const ports = await Promise.all(
    Array.from({ length: opts.pods }, async () => ({ port: await freePort(), clusterPort: await freePort() })),
  );
  const proxied = opts.dcnProxies !== undefined;
  if (proxied) {
    for (let p = 0; p < opts.pods; p++) {
      for (let q = p + 1; q < opts.pods; q++) {
        const proxy = new DcnProxy({ host: '127.0.0.1', port: ports[q].clusterPort });
        await proxy.start();
        opts.dcnProxies!.push({ from: p, to: q, proxy });
      }
    }
  }
  const nodes = ports.map(({ port, clusterPort }, pod) => {
    const config = join(opts.dir, `nats-pod-${pod}.conf`);
    // without a proxy every server dials every other; with one, only the lower pod dials, through the proxy
    const routes = proxied
      ? opts.dcnProxies!.filter((x) => x.from === pod).map((x) => x.proxy.port)
      : ports.filter((_, q) => q !== pod).map((p) => p.clusterPort);
    writeFileSync(
      config,
      natsConfig({ pod, port, clusterPort, routes: routes.map((p) => ({ port: p })), noAdvertise: proxied, users: opts.users }),
    );
    const child = spawnNats(opts.bin, config, join(opts.dir, 'logs', `nats-pod-${pod}.log`));
    opts.log.debug({ pod, port, clusterPort, pid: child.pid }, 'nats-server started');
    return { pod, url: `nats://127.0.0.1:${port}`, port, clusterPort, config, process: child };
  });
  try {
    await Promise.all(nodes.map((n) => waitForPort(n.port, opts.startupMs ?? 20_000, n.process, `nats-server of pod ${n.pod}`)));
  } catch (err) {
    // the caller never gets these servers: stop them here, or they outlive the run
    for (const n of nodes) if (n.process.exitCode === null) n.process.kill('SIGKILL');
    throw err;
  }
  return nodes;
}
