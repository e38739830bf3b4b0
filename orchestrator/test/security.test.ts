import { execFileSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ClusterPlan, Credentials, DcnProxy } from '@lockstep/infra';
import { preset } from '@lockstep/topology';
import { launch, runReference } from '../src/index.ts';
import { cli, quietLog, tempDir } from './helpers.ts';

/**
 * What a run exposes to anyone on the machine or the network but its owner:
 * no port of its nats-servers admits a connection without credentials, and
 * its secrets are in files only the owner may read, never on a command line
 * or in a log. Real servers, real processes; the probes are raw TCP.
 */

const STEPS = 20;
const t = preset('tiny');
const reference = runReference(t, STEPS).paramsHash;

interface Cluster {
  runId: string;
  credentials: Credentials | undefined;
  plan: ClusterPlan;
}

/** What a server said to a peer speaking the protocol raw: its INFO, then the rest until it closed the connection (or the deadline). */
interface Answer {
  info: { auth_required?: boolean; server_name?: string };
  after: string;
  closed: boolean;
}

/**
 * Connect to `port` as a client or a route peer would: read the server's
 * INFO, send `CONNECT <connect>` and a PING, and collect what comes back until
 * the server closes the connection or `ms` pass.
 */
function speak(port: number, connect: object, ms = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    let text = '';
    let info: Answer['info'] | undefined;
    const timer = setTimeout(() => {
      s.destroy();
      done(false);
    }, ms);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      if (!info) return reject(new Error(`port ${port}: no INFO (got ${JSON.stringify(text)})`));
      resolve({ info, after: text.slice(text.indexOf('\r\n') + 2), closed });
    };
    s.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (info || !text.includes('\r\n')) return;
      info = JSON.parse(text.slice(text.indexOf(' ') + 1, text.indexOf('\r\n'))) as Answer['info'];
      s.write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
    });
    s.on('error', () => {});
    s.on('close', () => done(true));
  });
}

/** A client's CONNECT with no user or password. */
const anonymousClient = { verbose: false, pedantic: false, lang: 'raw', version: '0', protocol: 1, headers: true };
/** The CONNECT a nats-server sends when it opens a route to another; `login` adds user and pass. */
const routePeer = (login?: { user: string; pass: string }) => ({
  echo: false,
  verbose: false,
  pedantic: false,
  tls_required: false,
  headers: true,
  name: 'NINTRUDERINTRUDERINTRUDERINTRUDERINTRUDERINTRUDERINTRUDER',
  cluster: 'lockstep',
  dynamic: false,
  lnoc: true,
  ...login,
});

/** The TCP ports process `pid` listens on (Linux: its socket inodes in /proc/<pid>/fd, found in /proc/net/tcp and tcp6). */
function listeningPorts(pid: number): number[] {
  return [...new Set(listening(pid).map((l) => l.port))].sort((a, b) => a - b);
}

/** The sockets a process listens on: port, and whether the address is loopback (127.0.0.1 or ::1) only. */
function listening(pid: number): { port: number; loopback: boolean }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const out: { port: number; loopback: boolean }[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const [, local, , state, , , , , , inode] = line.trim().split(/\s+/);
      const [address, port] = local.split(':');
      // 0A: LISTEN; loopback: 127.0.0.1 (0100007F, little-endian) or ::1
      if (state === '0A' && inodes.has(inode))
        out.push({ port: Number.parseInt(port, 16), loopback: address === '0100007F' || address === '00000000000000000000000001000000' });
    }
  }
  return out;
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
  );
}

/** The passwords of a run: each process's and the route's. */
function passwords(c: Credentials): string[] {
  return [...Object.values(c.users).map((u) => u.password), c.route.password];
}

describe.skipIf(process.platform !== 'linux')("a run's nats-servers admit nobody without credentials", () => {
  it('route ports refuse a route peer without the login (or with a wrong one); client ports of the pods and the run log refuse an anonymous client; the read-only monitoring port is on loopback; no other port is open; the run ends with the reference hash', async () => {
    const pids = new Map<string, number>();
    let cluster: Cluster | undefined;
    let probe:
      | Promise<
          {
            name: string;
            listening: number[];
            expected: number[];
            monitor: { loopback: boolean; healthz: unknown };
            client: Answer;
            route?: Answer;
            wrong?: Answer;
          }[]
        >
      | undefined;
    const result = await launch({
      topology: t,
      steps: STEPS,
      runDir: join(tempDir(), 'run'),
      log: quietLog,
      onSpawn: (name, pid) => pids.set(name, pid),
      onCluster: (c) => (cluster = c),
      onStep: (s) => {
        if (s.step !== 1) return; // early: the servers must be up for the whole probe
        const { plan, credentials } = cluster!;
        const wrong = { user: credentials!.route.user, pass: `${credentials!.route.password}x` };
        probe = Promise.all(
          plan.servers.map(async (server) => {
            const { name, port, clusterPort } = server;
            const monitorPort = Number(new URL(server.monitor!).port);
            return {
              name,
              listening: listeningPorts(pids.get(name)!),
              expected: [port, monitorPort, ...(clusterPort === null ? [] : [clusterPort])].sort((a, b) => a - b),
              monitor: {
                loopback: listening(pids.get(name)!).every((l) => l.port !== monitorPort || l.loopback),
                healthz: await (await fetch(`${server.monitor}/healthz`)).json(),
              },
              client: await speak(port, anonymousClient),
              route: clusterPort === null ? undefined : await speak(clusterPort, routePeer()),
              wrong: clusterPort === null ? undefined : await speak(clusterPort, routePeer(wrong)),
            };
          }),
        );
      },
    });
    const seen = await probe!;
    expect(seen.map((s) => s.name)).toEqual(['nats-0', 'nats-1', 'nats-log']);
    for (const s of seen) {
      // nothing but the client port, (pods) the route port and the monitoring port: no leaf node, gateway, websocket or
      // MQTT port. Monitoring is deliberate: it is read-only (GET /routez, /connz, /healthz; it changes nothing and
      // shows no password) and listens on loopback only, like the client port.
      expect(s.listening, s.name).toEqual(s.expected);
      expect(s.monitor, s.name).toEqual({ loopback: true, healthz: { status: 'ok' } });
      expect(s.client.info.auth_required, s.name).toBe(true);
      expect(s.client.after, s.name).toMatch(/^-ERR 'Authorization Violation'\r\n$/);
      expect(s.client.closed, s.name).toBe(true);
      if (s.name === 'nats-log') continue;
      for (const route of [s.route!, s.wrong!]) {
        expect(route.info.auth_required, s.name).toBe(true);
        expect(route.after, s.name).toMatch(/^-ERR 'Authorization Violation'\r\n$/); // no PONG: it never joined
        expect(route.closed, s.name).toBe(true);
      }
    }
    expect(result.steps).toBe(STEPS);
    expect(result.paramsHash).toBe(reference);
  }, 120_000);
});

describe.skipIf(process.platform !== 'linux')("a run's secrets are its owner's only", () => {
  it('through DCN proxies: the run dir is 0700, every file holding a password 0600; no password in a log, on a command line or in the result; the route through a proxy needs the login too', async () => {
    const runDir = join(tempDir(), 'run');
    const launcherLog: string[] = [];
    const log = pino(
      { level: 'trace' },
      new Writable({
        write(chunk, _enc, cb) {
          launcherLog.push(String(chunk));
          cb();
        },
      }),
    );
    const pids = new Map<string, number>();
    let cluster: Cluster | undefined;
    let links: { from: number; to: number; proxy: DcnProxy }[] = [];
    let during: Promise<{ commandLines: string[]; throughProxy: Answer }> | undefined;
    const result = await launch({
      topology: t,
      steps: STEPS,
      runDir,
      log,
      logLevel: 'trace',
      dcnProxy: true,
      onDcn: (l) => (links = l),
      onSpawn: (name, pid) => pids.set(name, pid),
      onCluster: (c) => (cluster = c),
      onStep: (s) => {
        if (s.step !== 1) return; // early: the servers must be up for the whole probe
        // what `ps` shows every user of the machine: every process's command line
        const ps = execFileSync('ps', ['-eww', '-o', 'args='], { encoding: 'utf8' }).split('\n');
        const own = [...pids.values()]
          .filter((pid) => existsSync(`/proc/${pid}`))
          .map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '));
        during = speak(links[0].proxy.port, routePeer()).then((throughProxy) => ({ commandLines: [...ps, ...own], throughProxy }));
      },
    });
    const { commandLines, throughProxy } = await during!;
    const secrets = passwords(cluster!.credentials!);
    const holding = (text: string) => secrets.filter((p) => text.includes(p));

    // the route went through the proxy, and an intruder there is refused like one at the route port
    expect(links.length).toBe(1);
    expect(links[0].proxy.stats.bytes.forward).toBeGreaterThan(0);
    expect(throughProxy.after).toMatch(/^-ERR 'Authorization Violation'\r\n$/);
    expect(result.paramsHash).toBe(reference);

    expect(statSync(runDir).mode & 0o777).toBe(0o700);
    const withSecrets: string[] = [];
    for (const f of filesUnder(runDir)) {
      if (holding(readFileSync(f, 'latin1')).length === 0) continue;
      withSecrets.push(relative(runDir, f));
      expect(statSync(f).mode & 0o777, f).toBe(0o600);
    }
    // the servers' configs and credentials.json, nothing else: no log, no record, no checkpoint
    expect(withSecrets.sort()).toEqual(['credentials.json', 'nats-pod-0.conf', 'nats-pod-1.conf', 'nats-runlog.conf']);
    expect(holding(readFileSync(join(runDir, 'credentials.json'), 'utf8'))).toEqual(secrets);
    // every server and process of the run logged there
    expect(readdirSync(join(runDir, 'logs')).length).toBe(cluster!.plan.servers.length + cluster!.plan.processes.length);

    expect(commandLines.filter((l) => l.includes(cluster!.runId)).length).toBe(cluster!.plan.processes.length * 2); // ps and /proc
    expect(commandLines.filter((l) => holding(l).length > 0)).toEqual([]);
    expect(launcherLog.length).toBeGreaterThan(0);
    expect(holding(launcherLog.join(''))).toEqual([]);
    expect(holding(JSON.stringify(result))).toEqual([]); // what `train --json` prints, and the summary table is made from
  }, 120_000);
});

describe.skipIf(process.platform !== 'linux')('a run directory someone else prepared is not used', () => {
  it("another user's directory is refused (exit 2, naming it); a link planted as credentials.json is replaced, and what it pointed to is untouched", () => {
    // as root (CI), hand a directory to another user, as an attacker who made it in /tmp first would have it
    if (process.getuid?.() === 0) {
      const theirs = join(tempDir(), 'theirs');
      mkdirSync(theirs, { mode: 0o777 });
      chownSync(theirs, 65534, 65534);
      const r = cli(['train', '--topology', 'tiny', '--steps', '2', '--run-dir', theirs]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/run directory .*theirs: belongs to user 65534, not to you \(0\)/);
      expect(readdirSync(theirs)).toEqual([]); // nothing of the run was written there
    }
    const dir = join(tempDir(), 'run');
    mkdirSync(dir, { mode: 0o777 });
    const victim = join(tempDir(), 'victim');
    writeFileSync(victim, 'IMPORTANT\n', { mode: 0o644 });
    symlinkSync(victim, join(dir, 'credentials.json'));
    const r = cli(['train', '--topology', 'tiny', '--steps', '2', '--run-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('IMPORTANT\n');
    expect(statSync(victim).mode & 0o777).toBe(0o644);
    const cred = lstatSync(join(dir, 'credentials.json'));
    expect(cred.isSymbolicLink()).toBe(false);
    expect(cred.mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  }, 120_000);
});
