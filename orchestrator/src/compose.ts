import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { z } from 'zod';
import { natsConfig, natsUsers, newCredentials, runLogServerConfig, type Credentials } from '@lockstep/infra';
import { describeIssues, InvalidInput, type Role, type Topology } from '@lockstep/topology';
import { hostGroups, hostProcessName } from './launcher.ts';

/**
 * A docker compose file for a topology: one nats-server per pod (clustered
 * over the `dcn` network, which stands for the data-center network), the run
 * log's JetStream server, one container per pod scheduler, per host group and
 * the client, on `internal: true` networks (nothing reaches outside). Valid
 * for `docker compose` (v2) and the standalone `docker-compose` 1.29: no
 * `version:` key, long-form `depends_on` with health conditions.
 *
 * A container that exits with an error is restarted (`on-failure`); its
 * process finds the marker it left at its first start and rejoins: a pod
 * scheduler learns the step from the client, a host heals from its cross-pod
 * peer, the client resumes from the run log.
 *
 * Each role connects as its own NATS user with per-subject permissions (a
 * host cannot publish a commit). The passwords are made when the directory is
 * first written and kept in its credentials.json; they are in the generated
 * files too, so treat the directory as the cluster's secret.
 */
export interface ComposeOptions {
  topology: Topology;
  /** A preset name the role containers pass on their command line; without one, the topology goes in a file beside the compose file, mounted into them. */
  preset?: string;
  steps: number;
  runId: string;
  image: string;
  natsImage: string;
  credentials: Credentials;
}

const NATS_PORT = 4222;
const ROUTE_PORT = 6222;
const EXIT_DELAY_MS = 10_000;

export function composeFile(o: ComposeOptions, confDir: string): { yaml: string; files: Record<string, string> } {
  const t = o.topology;
  const users = natsUsers(o.runId, o.credentials);
  const files: Record<string, string> = {};
  const services: Record<string, unknown> = {};
  const natsName = (p: number) => `nats-${p}`;
  const natsUrl = (p: number) => `nats://${natsName(p)}:${NATS_PORT}`;
  const health = { test: ['CMD', 'node', '/healthcheck.js', String(NATS_PORT)], interval: '2s', timeout: '3s', retries: 30 };
  const marker = { LOCKSTEP_RESTART_MARKER: '/tmp/lockstep-started' };
  const topologyArg = o.preset ?? '/etc/lockstep/topology.json';
  const topologyMount = o.preset ? [] : [`./${confDir}/topology.json:/etc/lockstep/topology.json:ro`];
  if (!o.preset) files['topology.json'] = `${JSON.stringify(t, null, 2)}\n`;

  for (let p = 0; p < t.pods; p++) {
    const conf = `${natsName(p)}.conf`;
    files[conf] = natsConfig({
      pod: p,
      host: '0.0.0.0',
      port: NATS_PORT,
      clusterPort: ROUTE_PORT,
      routes: Array.from({ length: t.pods }, (_, q) => q)
        .filter((q) => q !== p)
        .map((q) => ({ host: natsName(q), port: ROUTE_PORT })),
      users: users.cluster,
    });
    services[natsName(p)] = {
      image: o.natsImage,
      command: ['-c', '/etc/lockstep/nats.conf'],
      volumes: [`./${confDir}/${conf}:/etc/lockstep/nats.conf:ro`],
      networks: [`pod-${p}`, 'dcn', 'ctl'],
      healthcheck: health,
      restart: 'unless-stopped',
    };
  }
  files['nats-log.conf'] = runLogServerConfig({ host: '0.0.0.0', port: NATS_PORT, storeDir: '/data', users: users.runLog });
  services['nats-log'] = {
    image: o.natsImage,
    command: ['-c', '/etc/lockstep/nats.conf'],
    volumes: [`./${confDir}/nats-log.conf:/etc/lockstep/nats.conf:ro`, 'runlog:/data'],
    networks: ['ctl'],
    healthcheck: health,
    restart: 'unless-stopped',
  };

  const needsNats = (pods: number[], log = false) => ({
    ...Object.fromEntries(pods.map((p) => [natsName(p), { condition: 'service_healthy' }])),
    ...(log ? { 'nats-log': { condition: 'service_healthy' } } : {}),
  });
  const common = (p: number) => ['--run', o.runId, '--topology', topologyArg, '--nats', natsUrl(p)];
  const login = (r: Role) => ({ LOCKSTEP_NATS_USER: o.credentials[r].user, LOCKSTEP_NATS_PASS: o.credentials[r].password });
  const role = (r: Role, command: string[], networks: string[], dependsOn: Record<string, unknown>, volumes: string[] = []) => ({
    image: o.image,
    command,
    // pods and hosts outlive the client, so `up --exit-code-from client` ends on the client's exit, with its code
    environment: { ...marker, ...login(r), ...(r === 'client' ? {} : { LOCKSTEP_EXIT_DELAY_MS: String(EXIT_DELAY_MS) }) },
    networks,
    depends_on: dependsOn,
    ...(volumes.length || topologyMount.length ? { volumes: [...topologyMount, ...volumes] } : {}),
    restart: 'on-failure',
  });
  for (let p = 0; p < t.pods; p++)
    services[`pod-${p}`] = role('pod', ['pod', '--pod', String(p), ...common(p)], [`pod-${p}`], needsNats([p]));
  for (const g of hostGroups(t)) {
    services[hostProcessName(g).replace('..', '-to-')] = role(
      'host',
      ['host', '--pod', String(g.pod), '--hosts', g.hosts.join(','), '--ckpt-dir', '/ckpt', ...common(g.pod)],
      [`pod-${g.pod}`],
      needsNats([g.pod]),
      ['checkpoints:/ckpt'],
    );
  }
  const all = Array.from({ length: t.pods }, (_, p) => p);
  services.client = {
    ...role(
      'client',
      [
        'client',
        '--steps',
        String(o.steps),
        '--log-nats',
        `nats://nats-log:${NATS_PORT}`,
        '--ckpt-dir',
        '/ckpt',
        '--run',
        o.runId,
        '--topology',
        topologyArg,
        '--nats',
        all.map(natsUrl).join(','),
      ],
      ['ctl'],
      needsNats(all, true),
      ['checkpoints:/ckpt'],
    ),
    environment: { ...marker, ...login('client'), LOCKSTEP_SUMMARY: 'table' },
  };

  const networks: Record<string, unknown> = { dcn: { internal: true }, ctl: { internal: true } };
  for (let p = 0; p < t.pods; p++) networks[`pod-${p}`] = { internal: true };
  const doc = { services, networks, volumes: { checkpoints: {}, runlog: {} } };
  const header = [
    `# Generated by \`lockstep compose --topology ${o.preset ?? t.name} --steps ${o.steps}\`; edit the topology, not this file.`,
    '# Images: scripts/images.sh builds them without a registry (README: containers).',
    `# Run: docker compose -f <this file> up --exit-code-from client   (or docker-compose 1.29)`,
    '',
  ].join('\n');
  return { yaml: header + stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false }), files };
}

const Login = z.object({ user: z.string().min(1), password: z.string().min(12) }).strict();
const CredentialsFile = z.object({ client: Login, pod: Login, host: Login }).strict();

/**
 * Write the compose file and its NATS configs (in a directory named after
 * it). The credentials in that directory's credentials.json are kept when it
 * exists; otherwise new ones are made and written there (mode 0600).
 */
export function writeCompose(out: string, o: Omit<ComposeOptions, 'credentials'>): string[] {
  const confDir = basename(out).replace(/\.ya?ml$/, '');
  const dir = join(dirname(out), confDir);
  const credFile = join(dir, 'credentials.json');
  const credentials = existsSync(credFile) ? readCredentials(credFile) : newCredentials();
  const { yaml, files } = composeFile({ ...o, credentials }, confDir);
  mkdirSync(dir, { recursive: true });
  writeFileSync(credFile, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  chmodSync(credFile, 0o600); // a file that was there keeps its mode otherwise
  writeFileSync(out, yaml);
  const written = [out, credFile];
  for (const [name, text] of Object.entries(files)) {
    const f = join(dir, name);
    writeFileSync(f, text);
    written.push(f);
  }
  return written;
}

function readCredentials(file: string): Credentials {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new InvalidInput(file, [`(file): not valid JSON: ${(cause as Error).message}`], { cause });
  }
  const r = CredentialsFile.safeParse(value);
  if (!r.success) throw new InvalidInput(file, describeIssues(r.error));
  return r.data;
}
