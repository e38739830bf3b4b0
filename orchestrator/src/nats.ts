import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import { DcnProxy, type LocalPorts } from '@lockstep/infra';
import { NatsServerMissing, ProcessExited } from './errors.ts';
import type { LocalServer } from './local.ts';
import { freePorts } from './ports.ts';
import { writePrivate } from './private.ts';

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
  throw new NatsServerMissing(explicit);
}

/** A nats-server the launcher started, from its local rendering. */
export interface NatsNode extends LocalServer {
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

/**
 * Start nats-server with a config file, logging to `logFile` (also how a crashed server is restarted, on the same
 * ports). `holdFd` (the run directory's lock, see owner.ts) is handed to it as fd 3: the run stays owned while it runs.
 */
export function spawnNats(bin: string, config: string, logFile: string, holdFd?: number): ChildProcess {
  const logFd = openSync(logFile, 'a');
  try {
    return spawn(bin, ['-c', config], { stdio: ['ignore', logFd, logFd, ...(holdFd === undefined ? [] : [holdFd])] });
  } finally {
    closeSync(logFd); // the child has its own copy
  }
}

/**
 * Free ports on 127.0.0.1 for a cluster of `pods` pods: each pod's server's client, route and monitoring port, and
 * the run log's server's client and monitoring port.
 */
export async function localPorts(pods: number): Promise<LocalPorts> {
  const all = await freePorts(3 * pods + 2);
  return {
    pods: Array.from({ length: pods }, (_, p) => ({ port: all[3 * p], clusterPort: all[3 * p + 1], monitorPort: all[3 * p + 2] })),
    runLog: all[3 * pods],
    runLogMonitor: all[3 * pods + 1],
  };
}

/** A DCN fault proxy on the route of every pair of pods (pod p dials pod q > p through it). */
export async function startDcnProxies(ports: LocalPorts): Promise<{ from: number; to: number; proxy: DcnProxy }[]> {
  const links: { from: number; to: number; proxy: DcnProxy }[] = [];
  try {
    for (let p = 0; p < ports.pods.length; p++) {
      for (let q = p + 1; q < ports.pods.length; q++) {
        const proxy = new DcnProxy({ host: '127.0.0.1', port: ports.pods[q].clusterPort });
        await proxy.start();
        links.push({ from: p, to: q, proxy });
      }
    }
  } catch (err) {
    await Promise.all(links.map((l) => l.proxy.stop()));
    throw err;
  }
  return links;
}

/** Write each server's config file (mode 0600: it holds passwords), start them all and wait until each listens; if one fails, stop them all. */
export async function startNatsServers(
  servers: LocalServer[],
  opts: { bin: string; log: Logger; startupMs?: number; holdFd?: number; onSpawn?: (child: ChildProcess) => void },
): Promise<NatsNode[]> {
  const nodes = servers.map((s) => {
    writePrivate(s.config.file, s.config.text);
    const child = spawnNats(opts.bin, s.config.file, s.logFile, opts.holdFd);
    opts.onSpawn?.(child);
    opts.log.debug({ server: s.name, port: s.port, pid: child.pid }, 'nats-server started');
    return { ...s, process: child };
  });
  try {
    await Promise.all(nodes.map((n) => waitForPort(n.port, opts.startupMs ?? 20_000, n.process, `nats-server ${n.name}`)));
  } catch (err) {
    // the caller never gets these servers: stop them here, or they outlive the run
    for (const n of nodes) if (n.process.exitCode === null) n.process.kill('SIGKILL');
    throw err;
  }
  return nodes;
}
