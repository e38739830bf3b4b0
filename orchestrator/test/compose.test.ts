import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { preset } from '@lockstep/topology';
import { composeFile } from '../src/compose.ts';
import { cli, tempDir } from './helpers.ts';

const root = join(import.meta.dirname, '..', '..');

describe('lockstep compose', () => {
  it('the committed infra/compose/demo.yaml is what the generator writes for demo', () => {
    const d = tempDir();
    const out = join(d, 'demo.yaml');
    const r = cli(['compose', '--topology', 'demo', '--steps', '100', '--run', 'demo', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(join(root, 'infra', 'compose', 'demo.yaml'), 'utf8'));
    for (const f of ['nats-0.conf', 'nats-1.conf', 'nats-log.conf']) expect(readFileSync(join(d, 'demo', f), 'utf8')).toBe(readFileSync(join(root, 'infra', 'compose', 'demo', f), 'utf8'));
  });

  it('every network is internal; every service has a restart policy; nats servers have health checks the roles wait for', () => {
    const { yaml } = composeFile({ topology: preset('demo'), preset: 'demo', steps: 100, runId: 'demo', image: 'lockstep:dev', natsImage: 'lockstep-nats:2.9.10' }, 'demo');
    const doc = parse(yaml) as { version?: string; services: Record<string, Record<string, unknown>>; networks: Record<string, { internal: boolean }> };
    expect(doc.version).toBeUndefined(); // the compose spec: read by docker compose v2 and docker-compose 1.29 alike
    expect(Object.values(doc.networks).every((n) => n.internal === true)).toBe(true);
    const names = Object.keys(doc.services);
    expect(names.filter((n) => n.startsWith('host-')).length).toBe(8);
    expect(names).toEqual(expect.arrayContaining(['nats-0', 'nats-1', 'nats-log', 'pod-0', 'pod-1', 'client']));
    for (const [name, s] of Object.entries(doc.services)) {
      expect(['on-failure', 'unless-stopped'], name).toContain(s.restart);
      if (name.startsWith('nats-')) expect(s.healthcheck, name).toBeDefined();
      else expect(Object.values(s.depends_on as Record<string, { condition: string }>).every((c) => c.condition === 'service_healthy'), name).toBe(true);
    }
    // hosts see only their own pod's network; the pods' servers are joined by the dcn network
    expect(doc.services['host-1-2'].networks).toEqual(['pod-1']);
    expect(doc.services['nats-0'].networks).toEqual(['pod-0', 'dcn', 'ctl']);
  });

  it('a topology file goes beside the compose file, mounted into every role container', () => {
    const d = tempDir();
    const topo = join(d, 'three.yaml');
    writeFileSync(topo, 'name: three\npods: 3\nhostsPerPod: 2\nchipsPerHost: 4\nmodel: { inputDim: 8, hiddenDim: 8, outputDim: 2 }\ntraining: { seed: 1, globalBatch: 12, optimizer: { kind: adam, lr: 0.01 } }\n');
    const out = join(d, 'three.yaml.out', 'three.yaml');
    const r = cli(['compose', '--topology', topo, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(readFileSync(out, 'utf8')) as { services: Record<string, { command: string[]; volumes?: string[] }> };
    expect(Object.keys(doc.services).filter((n) => n.startsWith('nats-') && n !== 'nats-log').length).toBe(3);
    expect(doc.services['host-2-1'].command).toEqual(expect.arrayContaining(['--topology', '/etc/lockstep/topology.json']));
    expect(doc.services['host-2-1'].volumes).toContain('./three/topology.json:/etc/lockstep/topology.json:ro');
    expect(JSON.parse(readFileSync(join(d, 'three.yaml.out', 'three', 'topology.json'), 'utf8')).pods).toBe(3);
  });

  it('a bad topology file exits 2 naming the field', () => {
    const d = tempDir();
    writeFileSync(join(d, 'bad.yaml'), 'name: bad\npods: 0\n');
    const r = cli(['compose', '--topology', join(d, 'bad.yaml'), '--out', join(d, 'x.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pods/);
  });
});
