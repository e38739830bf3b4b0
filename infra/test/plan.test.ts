import { describe, expect, it } from 'vitest';
import { identityPermissions, parseTopology, preset } from '@lockstep/topology';
import {
  Credentials,
  clusterIdentities,
  clusterPlan,
  containerName,
  hostGroups,
  identityOf,
  newCredentials,
  planEntry,
  type PlanOptions,
} from '../src/index.ts';

const containers: PlanOptions = { runId: 'demo', steps: 100, topologyArg: 'demo', place: { kind: 'containers' } };
const fiveByThree = parseTopology({
  ...preset('tiny'),
  name: 'five',
  hostsPerPod: 5,
  hostsPerProcess: 3,
  training: { ...preset('tiny').training, globalBatch: 60 },
});

describe('cluster plan', () => {
  it('demo: a nats-server per pod and the run log server, 2 pod schedulers, 8 host processes, the client', () => {
    const plan = clusterPlan(preset('demo'), containers);
    expect(plan.servers.map((s) => [s.name, s.role, s.pod, s.routes])).toEqual([
      ['nats-0', 'pod', 0, [1]],
      ['nats-1', 'pod', 1, [0]],
      ['nats-log', 'runlog', null, []],
    ]);
    expect(plan.processes.map((p) => p.name)).toEqual([
      'pod-0',
      'pod-1',
      ...[0, 1].flatMap((p) => [0, 1, 2, 3].map((h) => `host-${p}-${h}`)),
      'client',
    ]);
    expect(plan.networks).toEqual(['dcn', 'ctl', 'pod-0', 'pod-1']);
    // the route between the pods' servers is the DCN
    expect(plan.servers[0].config).toContain('routes: [nats-route://nats-1:6222]');
    expect(plan.servers[0].networks).toEqual(['pod-0', 'dcn', 'ctl']);
    expect(plan.servers[2].config).toContain('jetstream { store_dir: "/data"');
    const host = plan.processes.find((p) => p.name === 'host-1-2')!;
    expect(host).toMatchObject({ role: 'host', pod: 1, hosts: [2], servers: ['nats-1'], networks: ['pod-1'], checkpoints: true });
    expect(host.args).toEqual([
      'host',
      '--pod',
      '1',
      '--hosts',
      '2',
      '--ckpt-dir',
      '/ckpt',
      '--run',
      'demo',
      '--topology',
      'demo',
      '--nats',
      'nats://nats-1:4222',
    ]);
    const client = plan.processes.at(-1)!;
    expect(client.servers).toEqual(['nats-0', 'nats-1', 'nats-log']);
    expect(client.args).toEqual(
      expect.arrayContaining(['--log-nats', 'nats://nats-log:4222', '--nats', 'nats://nats-0:4222,nats://nats-1:4222']),
    );
  });

  it('hosts are grouped hostsPerProcess to a process: 5 hosts a pod, 3 a process, make 3 + 2', () => {
    expect(hostGroups(fiveByThree)).toEqual([
      { pod: 0, hosts: [0, 1, 2] },
      { pod: 0, hosts: [3, 4] },
      { pod: 1, hosts: [0, 1, 2] },
      { pod: 1, hosts: [3, 4] },
    ]);
    const plan = clusterPlan(fiveByThree, { ...containers, topologyArg: '/etc/lockstep/topology.json' });
    const hosts = plan.processes.filter((p) => p.role === 'host');
    expect(hosts.map((p) => p.name)).toEqual(['host-0-0..2', 'host-0-3..4', 'host-1-0..2', 'host-1-3..4']);
    expect(hosts.map((p) => p.args[p.args.indexOf('--hosts') + 1])).toEqual(['0,1,2', '3,4', '0,1,2', '3,4']);
    expect(hosts.map((p) => containerName(p.name))).toEqual(['host-0-0-to-2', 'host-0-3-to-4', 'host-1-0-to-2', 'host-1-3-to-4']);
    expect(plan.processes.length).toBe(2 + 4 + 1);
    // a host's name finds the process that runs it
    expect(planEntry(plan, 'host-1-4')?.name).toBe('host-1-3..4');
    expect(planEntry(plan, 'host-0-0-to-2')?.name).toBe('host-0-0..2');
    expect(planEntry(plan, 'nats-log')?.role).toBe('runlog');
    expect(planEntry(plan, 'host-0-5')).toBeUndefined();
    // and so do the fault targets as scenarios name them
    expect(planEntry(plan, 'host/1/4')?.name).toBe('host-1-3..4');
    expect(planEntry(plan, 'pod/1')?.name).toBe('pod-1');
    expect(planEntry(plan, 'nats/0')?.name).toBe('nats-0');
    expect(planEntry(plan, 'client')?.role).toBe('client');
    expect(planEntry(plan, 'host/0/5')).toBeUndefined();
    expect(planEntry(plan, 'nats/2')).toBeUndefined();
    expect(planEntry(plan, 'host-1/4')).toBeUndefined();
  });

  it('each process is its own NATS identity, named after it, speaking for the actors it runs', () => {
    expect(clusterIdentities(preset('tiny'))).toEqual([
      { name: 'pod-0', actors: ['pod/0'] },
      { name: 'pod-1', actors: ['pod/1'] },
      { name: 'host-0-0', actors: ['host/0/0'] },
      { name: 'host-0-1', actors: ['host/0/1'] },
      { name: 'host-1-0', actors: ['host/1/0'] },
      { name: 'host-1-1', actors: ['host/1/1'] },
      { name: 'client', actors: ['client'] },
    ]);
    const grouped = clusterIdentities(fiveByThree).filter((i) => i.name.startsWith('host-1'));
    expect(grouped).toEqual([
      { name: 'host-1-0..2', actors: ['host/1/0', 'host/1/1', 'host/1/2'] },
      { name: 'host-1-3..4', actors: ['host/1/3', 'host/1/4'] },
    ]);
    expect(identityOf(fiveByThree, 'host/1/4')).toBe('host-1-3..4');
    expect(identityOf(fiveByThree, 'client')).toBe('client');
    expect(identityOf(fiveByThree, 'host/2/0')).toBeUndefined();
    const plan = clusterPlan(fiveByThree, containers);
    expect(plan.processes.map((p) => ({ name: p.name, actors: p.actors }))).toEqual(clusterIdentities(fiveByThree));
  });

  it('each process logs in as its own identity; the servers know each with what its actors may (and the observer), the run log only the client', () => {
    const credentials = newCredentials(clusterIdentities(fiveByThree));
    expect(Credentials.parse(JSON.parse(JSON.stringify(credentials)))).toEqual(credentials);
    const observer = { user: 'observer', password: 'observer-password' };
    const plan = clusterPlan(fiveByThree, { ...containers, credentials, observer });
    for (const p of plan.processes) {
      expect(p.env).toEqual({ LOCKSTEP_NATS_USER: p.name, LOCKSTEP_NATS_PASS: credentials.users[p.name].password });
      const line = plan.servers[1].config.split('\n').find((l) => l.includes(`user: ${JSON.stringify(p.name)},`));
      const { publish, subscribe } = identityPermissions('demo', p.actors);
      const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
      expect(line, p.name).toContain(`permissions: { publish: ${list(publish)}, subscribe: ${list(subscribe)} }`);
    }
    expect(new Set(Object.values(credentials.users).map((u) => u.password)).size).toBe(plan.processes.length);
    expect(plan.servers[1].config).toContain('user: "host-1-3..4"');
    expect(plan.servers[1].config).toContain('"lockstep.demo.host.*.*.data.1.4"');
    expect(plan.servers[1].config).toContain('user: "observer"');
    expect(plan.servers[2].config).toContain('user: "client"');
    expect(plan.servers[2].config).not.toContain('user: "host');
    expect(plan.servers[2].config).not.toContain('user: "pod');
    // credentials without a login for some process are refused, naming it
    const { 'host-1-3..4': _, ...fewer } = credentials.users;
    expect(() => clusterPlan(fiveByThree, { ...containers, credentials: { users: fewer, route: credentials.route } })).toThrow(
      /no login for host-1-3\.\.4/,
    );
    const route = credentials.route;
    expect(Credentials.safeParse({ users: { 'host-0-0': { user: 'host-0-0', password: 'short' } }, route }).success).toBe(false);
    expect(Credentials.safeParse({ users: { nobody: { user: 'nobody', password: 'long-enough-password' } }, route }).success).toBe(false);
    expect(Credentials.safeParse({ users: credentials.users }).success).toBe(false); // no route login
    expect(Credentials.safeParse({ users: credentials.users, route }).success).toBe(true);
    // without credentials anyone may connect
    const open = clusterPlan(preset('tiny'), containers);
    expect(open.processes.every((p) => Object.keys(p.env).length === 0)).toBe(true);
    expect(open.servers.every((s) => !s.config.includes('authorization'))).toBe(true);
  });

  it('locally: loopback ports, files under the run directory, every server listed for failover (own pod first)', () => {
    const t = parseTopology({ ...preset('tiny'), name: 'three', pods: 3, training: { ...preset('tiny').training, globalBatch: 36 } });
    const ports = {
      pods: [
        { port: 4001, clusterPort: 6001 },
        { port: 4002, clusterPort: 6002 },
        { port: 4003, clusterPort: 6003 },
      ],
      runLog: 4100,
    };
    const plan = clusterPlan(t, {
      ...containers,
      topologyArg: '/run/topology.json',
      logLevel: 'warn',
      place: { kind: 'local', dir: '/run', ports },
    });
    expect(plan.servers.map((s) => s.url)).toEqual([
      'nats://127.0.0.1:4001',
      'nats://127.0.0.1:4002',
      'nats://127.0.0.1:4003',
      'nats://127.0.0.1:4100',
    ]);
    expect(plan.servers[1].config).toContain('listen: 127.0.0.1:4002');
    expect(plan.servers[1].config).toContain('routes: [nats-route://127.0.0.1:6001, nats-route://127.0.0.1:6003]');
    expect(plan.servers[3].config).toContain('jetstream { store_dir: "/run/jetstream"');
    const host = plan.processes.find((p) => p.name === 'host-1-0')!;
    expect(host.servers).toEqual(['nats-1', 'nats-0', 'nats-2']);
    expect(host.args).toEqual(expect.arrayContaining(['--nats', 'nats://127.0.0.1:4002,nats://127.0.0.1:4001,nats://127.0.0.1:4003']));
    expect(host.args).toEqual(
      expect.arrayContaining(['--ckpt-dir', '/run/checkpoints', '--log-level', 'warn', '--topology', '/run/topology.json']),
    );
    expect(() => clusterPlan(preset('tiny'), { ...containers, place: { kind: 'local', dir: '/run', ports } })).toThrow(
      /3 port pairs for 2 pods/,
    );
  });

  it('through DCN proxies only the lower pod dials, through its proxy, and no server advertises its route address', () => {
    const ports = {
      pods: [
        { port: 4001, clusterPort: 6001 },
        { port: 4002, clusterPort: 6002 },
      ],
      runLog: 4100,
    };
    const plan = clusterPlan(preset('tiny'), {
      ...containers,
      place: { kind: 'local', dir: '/run', ports, dcn: [{ from: 0, to: 1, port: 7001 }] },
    });
    expect(plan.servers.map((s) => s.routes)).toEqual([[1], [], []]);
    expect(plan.servers[0].config).toContain('routes: [nats-route://127.0.0.1:7001]');
    expect(plan.servers[1].config).toContain('routes: []');
    expect(plan.servers[0].config).toContain('no_advertise: true');
    expect(plan.servers[1].config).toContain('no_advertise: true');
  });

  it("with credentials, every pod's server requires the run's route login and dials with it: in containers, locally, through DCN proxies", () => {
    const identities = clusterIdentities(preset('tiny'));
    const credentials = newCredentials(identities);
    const { user, password } = credentials.route;
    expect(password).not.toBe(newCredentials(identities).route.password); // made per run
    const ports = {
      pods: [
        { port: 4001, clusterPort: 6001 },
        { port: 4002, clusterPort: 6002 },
      ],
      runLog: 4100,
    };
    const placements: PlanOptions['place'][] = [
      { kind: 'containers' },
      { kind: 'local', dir: '/run', ports },
      { kind: 'local', dir: '/run', ports, dcn: [{ from: 0, to: 1, port: 7001 }] },
    ];
    const dialed = placements.map((place) => {
      const plan = clusterPlan(preset('tiny'), { ...containers, credentials, place });
      const pods = plan.servers.filter((s) => s.role === 'pod');
      for (const s of pods) expect(s.config).toContain(`authorization { user: "${user}", password: "${password}", timeout: 5 }`);
      // the run log's server joins no cluster: it has no route port
      expect(plan.servers.find((s) => s.role === 'runlog')!.config).not.toContain('cluster');
      return pods.map((s) => /routes: \[(.*)\]/.exec(s.config)![1]);
    });
    expect(dialed).toEqual([
      [`nats-route://${user}:${password}@nats-1:6222`, `nats-route://${user}:${password}@nats-0:6222`],
      [`nats-route://${user}:${password}@127.0.0.1:6002`, `nats-route://${user}:${password}@127.0.0.1:6001`],
      [`nats-route://${user}:${password}@127.0.0.1:7001`, ''],
    ]);
  });
});
