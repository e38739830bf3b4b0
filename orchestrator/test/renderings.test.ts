import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterIdentities, clusterPlan, containerName, newCredentials } from '@lockstep/infra';
import { clusterContainers } from '@lockstep/infra/testcontainers';
import { parseTopology, preset, type Topology } from '@lockstep/topology';
import { composeFile } from '../src/compose.ts';
import { localRendering } from '../src/index.ts';

/** What identifies a role process whatever renders it: its role, pod, hosts and NATS user. */
function identity(name: string, args: string[], env: Record<string, string>) {
  const flag = (f: string) => (args.includes(f) ? args[args.indexOf(f) + 1] : undefined);
  return { name: containerName(name), role: args[0], pod: flag('--pod'), hosts: flag('--hosts'), user: env.LOCKSTEP_NATS_USER };
}

function renderings(t: Topology) {
  const credentials = newCredentials(clusterIdentities(t));
  const common = { runId: 'r', steps: 10, credentials };
  const ports = { pods: Array.from({ length: t.pods }, (_, p) => ({ port: 4000 + p, clusterPort: 6000 + p })), runLog: 4100 };
  const local = localRendering(
    clusterPlan(t, { ...common, topologyArg: '/run/topology.json', place: { kind: 'local', dir: '/run', ports } }),
    '/run',
  );
  const composed = composeFile({ ...common, topology: t, image: 'lockstep:dev', natsImage: 'lockstep-nats:2.9.10' }, 'c');
  const compose = parse(composed.yaml) as {
    services: Record<string, { command: string[]; environment?: Record<string, string> }>;
  };
  const containers = clusterContainers(
    clusterPlan(t, { ...common, topologyArg: '/etc/lockstep/topology.json', place: { kind: 'containers' } }),
    {
      image: 'lockstep:dev',
      natsImage: 'lockstep-nats:2.9.10',
      topology: t,
    },
  );
  // the cluster's processes: not the servers, nor the status page (`ui`), which compose adds beside the plan
  const composeRoles = Object.entries(compose.services).filter(([name]) => !name.startsWith('nats-') && name !== 'ui');
  return {
    credentials,
    /** The pods' servers' configs, as each rendering writes them. */
    podConfigs: {
      local: local.servers.filter((s) => s.pod >= 0).map((s) => s.config.text),
      compose: Object.entries(composed.files)
        .filter(([file]) => /^nats-\d+\.conf$/.test(file))
        .map(([, text]) => text),
      containers: containers.filter((c) => c.kind === 'server' && c.name !== 'nats-log').map((c) => c.files[0].content),
    },
    servers: {
      local: local.servers.map((s) => s.name),
      compose: Object.keys(compose.services).filter((name) => name.startsWith('nats-')),
      containers: containers.filter((c) => c.kind === 'server').map((c) => c.alias),
    },
    processes: {
      local: local.roles.map((p) => identity(p.name, p.args, p.env)),
      compose: composeRoles.map(([name, s]) => identity(name, s.command, s.environment ?? {})),
      containers: containers.filter((c) => c.kind === 'role').map((c) => identity(c.alias, c.command, c.env)),
    },
  };
}

describe('the launcher, compose and testcontainers render one cluster plan', () => {
  const grouped = parseTopology({
    ...preset('tiny'),
    name: 'grouped',
    hostsPerPod: 5,
    hostsPerProcess: 3,
    training: { ...preset('tiny').training, globalBatch: 60 },
  });
  const threePods = parseTopology({ ...preset('tiny'), name: 'three', pods: 3, training: { ...preset('tiny').training, globalBatch: 36 } });

  for (const t of [preset('demo'), grouped, threePods]) {
    it(`${t.name}: the same servers, and the same processes (role, pod, hosts, NATS user) in the same order`, () => {
      const r = renderings(t);
      expect(r.servers.compose).toEqual(r.servers.local);
      expect(r.servers.containers).toEqual(r.servers.local);
      expect(r.servers.local).toEqual([...Array.from({ length: t.pods }, (_, p) => `nats-${p}`), 'nats-log']);
      expect(r.processes.compose).toEqual(r.processes.local);
      expect(r.processes.containers).toEqual(r.processes.local);
      const hostProcesses = t.pods * Math.ceil(t.hostsPerPod / t.hostsPerProcess);
      expect(r.processes.local.length).toBe(t.pods + hostProcesses + 1);
    });
  }

  it("each rendering's pods' servers require the run's route login at their route ports and dial with it", () => {
    for (const t of [preset('demo'), threePods]) {
      const r = renderings(t);
      const { user, password } = r.credentials.route;
      for (const [rendering, configs] of Object.entries(r.podConfigs)) {
        expect(configs.length, rendering).toBe(t.pods);
        for (const c of configs) {
          expect(c, rendering).toContain(`authorization { user: "${user}", password: "${password}"`);
          const routes = /routes: \[(.*)\]/.exec(c)![1].split(', ');
          expect(routes.length, rendering).toBe(t.pods - 1);
          for (const u of routes) expect(u, rendering).toMatch(new RegExp(`^nats-route://${user}:${password}@`));
        }
      }
    }
  });

  it('hostsPerProcess 3 with 5 hosts a pod: each renders host processes of 3 and 2 hosts', () => {
    const r = renderings(grouped);
    expect(r.processes.containers.filter((p) => p.role === 'host').map((p) => [p.name, p.hosts, p.user])).toEqual([
      ['host-0-0-to-2', '0,1,2', 'host-0-0..2'],
      ['host-0-3-to-4', '3,4', 'host-0-3..4'],
      ['host-1-0-to-2', '0,1,2', 'host-1-0..2'],
      ['host-1-3-to-4', '3,4', 'host-1-3..4'],
    ]);
  });
});
