import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import {
  Credentials,
  Login,
  MONITOR_PORT,
  clusterIdentities,
  clusterPlan,
  containerName,
  newCredentials,
  newObserverLogin,
  newRouteLogin,
  podServers,
  watchArgs,
} from '@lockstep/infra';
import { describeIssues, InvalidInput, type Topology } from '@lockstep/topology';
import { makeDirs, privateDir, writePrivate } from './private.ts';

/**
 * A docker compose file for a topology: its cluster plan (`clusterPlan`) as
 * services, one nats-server per pod (clustered over the `dcn` network, which
 * stands for the data-center network), the run log's JetStream server, one
 * container per pod scheduler, per host group and the client, on
 * `internal: true` networks (nothing reaches outside). Valid
 * for `docker compose` (v2) and the standalone `docker-compose` 1.29: no
 * `version:` key, long-form `depends_on` with health conditions.
 *
 * The `ui` service serves the status page (`lockstep watch`, as the
 * `observer` NATS user, which may subscribe to the run's subjects and publish
 * nothing) on 127.0.0.1:7373 of the machine: the one published port, on a
 * network of its own that is not internal.
 *
 * A container that exits with an error is restarted (`on-failure`); its
 * process finds the marker it left at its first start and rejoins: a pod
 * scheduler learns the step from the client, a host heals from its cross-pod
 * peer, the client resumes from the run log.
 *
 * Each process connects as its own NATS user, allowed to publish only as the
 * actors it runs (a host cannot publish a commit, nor anything as another
 * host), and the pods' servers require a route login of each other (nobody
 * else on the dcn network can join as a server). The passwords are made when
 * the directory is first written (or a process first needs one) and kept in
 * its credentials.json; they are in the generated files too (each process's
 * in the compose file, all in the servers' configs), so every file is written
 * owner-only (0600, the directory 0700).
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
  /** The status page's port, published on the machine's loopback only (default 7373; LOCKSTEP_UI_PORT at `up` overrides it). */
  uiPort?: number;
  /**
   * The runs folder the `ui` service records the run in (`<run>-<UTC time>/`, and `latest`), relative to the compose
   * file (bind-mounted). Without, the run leaves no record.
   */
  runsDir?: string;
  /** The `ui` service's kill buttons: the engine's socket is mounted into it so it can kill and start a host's container (default true). */
  kill?: boolean;
  /**
   * The checkout to build the images from, relative to the compose file: every service gets a `build:` section
   * (infra/docker/Dockerfile, infra/docker/nats.Dockerfile), so `up --build` builds them where a registry is
   * reachable. Without, the images must exist (scripts/images.sh).
   */
  buildContext?: string;
}

/** Where the compose demo's status page is published (127.0.0.1 only). */
export const COMPOSE_UI_PORT = 7373;

const CONF = '/etc/lockstep/nats.conf';
const TOPOLOGY_FILE = '/etc/lockstep/topology.json';
const EXIT_DELAY_MS = 10_000;
/** Where the role containers write their stream files (a volume the `ui` service reads) and where it records the run. */
const STREAMS = '/run/lockstep/streams';
const RUNS = '/run/lockstep/runs';
const DOCKER_SOCKET = '/var/run/docker.sock';

/** `${NAME:-value}`: the environment at `up` may override what the file was written with (docker compose and docker-compose 1.29 both read it). */
const fromEnv = (name: string, value: string | number) => `\${${name}:-${value}}`;

export function composeFile(o: ComposeOptions, confDir: string): { yaml: string; files: Record<string, string> } {
  const t = o.topology;
  const plan = clusterPlan(t, {
    runId: o.runId,
    steps: o.steps,
    topologyArg: o.preset ?? TOPOLOGY_FILE,
    credentials: o.credentials,
    place: { kind: 'containers' },
  });
  const files: Record<string, string> = {};
  const services: Record<string, unknown> = {};
  const record = o.runsDir !== undefined && o.credentials.observer !== undefined;
  const topologyMount = o.preset ? [] : [`./${confDir}/topology.json:${TOPOLOGY_FILE}:ro`];
  if (!o.preset) files['topology.json'] = `${JSON.stringify(t, null, 2)}\n`;

  // the servers: a pod's on its pod's network, the dcn (its routes to the other pods') and ctl (the client's); the run log's on ctl
  for (const s of plan.servers) {
    files[`${s.name}.conf`] = s.config;
    services[containerName(s.name)] = {
      image: fromEnv('LOCKSTEP_NATS_IMAGE', o.natsImage),
      ...(o.buildContext !== undefined ? { build: { context: o.buildContext, dockerfile: 'infra/docker/nats.Dockerfile' } } : {}),
      command: ['-c', CONF],
      volumes: [`./${confDir}/${s.name}.conf:${CONF}:ro`, ...(s.role === 'runlog' ? ['runlog:/data'] : [])],
      networks: s.networks,
      // nats-server's own /healthz on its monitoring port: it answers once the server accepts clients
      healthcheck: {
        test: ['CMD', 'node', '/healthcheck.js', String(MONITOR_PORT), '/healthz'],
        interval: '2s',
        timeout: '3s',
        retries: 30,
      },
      restart: 'unless-stopped',
    };
  }
  // the role processes: each waits for the servers it connects to
  for (const p of plan.processes) {
    services[containerName(p.name)] = {
      image: fromEnv('LOCKSTEP_IMAGE', o.image),
      ...(o.buildContext !== undefined ? { build: { context: o.buildContext, dockerfile: 'infra/docker/Dockerfile' } } : {}),
      command: p.args,
      environment: {
        LOCKSTEP_RESTART_MARKER: '/tmp/lockstep-started',
        ...p.env,
        // pods and hosts outlive the client, so `up --exit-code-from client` ends on the client's exit, with its code;
        // in a container there is no launcher to print the summary: the client prints its table
        ...(p.role === 'client' ? { LOCKSTEP_SUMMARY: 'table' } : { LOCKSTEP_EXIT_DELAY_MS: String(EXIT_DELAY_MS) }),
        // its run events (and the client's lines) for the ui service's record of the run
        ...(record ? { LOCKSTEP_STREAM_FILE: `${STREAMS}/${p.name}.jsonl` } : {}),
      },
      networks: p.networks,
      depends_on: Object.fromEntries(p.servers.map((s) => [containerName(s), { condition: 'service_healthy' }])),
      ...(p.checkpoints || topologyMount.length || record
        ? { volumes: [...topologyMount, ...(p.checkpoints ? ['checkpoints:/ckpt'] : []), ...(record ? [`streams:${STREAMS}`] : [])] }
        : {}),
      restart: 'on-failure',
    };
  }

  // the status page (`lockstep watch`, as the observer): on ctl, where it reaches every server, and on a network of its
  // own, the one that is not internal, so that its port can be published (on the machine's loopback only)
  const ui: Record<string, unknown> = {};
  const observer = o.credentials.observer;
  if (observer) {
    const pods = podServers(plan);
    const port = o.uiPort ?? COMPOSE_UI_PORT;
    const kill = o.kill ?? true;
    services.ui = {
      image: fromEnv('LOCKSTEP_IMAGE', o.image),
      ...(o.buildContext !== undefined ? { build: { context: o.buildContext, dockerfile: 'infra/docker/Dockerfile' } } : {}),
      command: [
        ...watchArgs(plan, { runId: o.runId, topology: o.preset ?? TOPOLOGY_FILE, steps: o.steps, ui: `0.0.0.0:${COMPOSE_UI_PORT}` }),
        ...(record ? ['--streams', STREAMS, '--runs-dir', RUNS] : []),
        ...(kill ? ['--kill', 'docker'] : []),
      ],
      environment: { LOCKSTEP_NATS_USER: observer.user, LOCKSTEP_NATS_PASS: observer.password },
      networks: ['ctl', 'ui'],
      // inside its container it always listens on 7373; the machine's port is the file's, or LOCKSTEP_UI_PORT's at `up`
      ports: [`127.0.0.1:${fromEnv('LOCKSTEP_UI_PORT', port)}:${COMPOSE_UI_PORT}`],
      depends_on: Object.fromEntries(pods.map((x) => [containerName(x.name), { condition: 'service_healthy' }])),
      ...(topologyMount.length || record || kill
        ? {
            volumes: [
              ...topologyMount,
              ...(record ? [`streams:${STREAMS}:ro`, `${o.runsDir}:${RUNS}`] : []),
              // the kill buttons: the engine's API, to kill and start a host's container of this project
              ...(kill ? [`${DOCKER_SOCKET}:${DOCKER_SOCKET}`] : []),
            ],
          }
        : {}),
      restart: 'on-failure',
    };
    ui.ui = {};
  }
  const networks = { ...Object.fromEntries(plan.networks.map((n) => [n, { internal: true }])), ...ui };
  const doc = { services, networks, volumes: { checkpoints: {}, runlog: {}, ...(record ? { streams: {} } : {}) } };
  const header = [
    `# Generated by \`lockstep compose --topology ${o.preset ?? t.name} --steps ${o.steps}\`; edit the topology, not this file.`,
    '# Images: scripts/images.sh builds them without a registry (README: containers); LOCKSTEP_IMAGE and LOCKSTEP_NATS_IMAGE at `up` choose others.',
    `# Status page: http://127.0.0.1:${o.uiPort ?? COMPOSE_UI_PORT}/ (LOCKSTEP_UI_PORT at \`up\` moves it)${o.runsDir !== undefined ? `; the run's record goes in ${o.runsDir}/<run>-<time>/` : ''}.`,
    `# Run: docker compose -f <this file> up --exit-code-from client   (or docker-compose 1.29)`,
    '# (that stops every container once any exits, a host killed from the status page too: scripts/compose-demo.sh runs it detached)',
    ...(o.buildContext !== undefined ? ['# With a registry, `up --build` builds the images from the checkout instead.'] : []),
    '',
  ].join('\n');
  return { yaml: header + stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false }), files };
}

/** The checkout this code runs from (src/ and dist/ sit one level below orchestrator/), when it has the Dockerfiles. */
function checkout(): string | undefined {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  return existsSync(join(root, 'infra', 'docker', 'Dockerfile')) ? root : undefined;
}

/** A directory's credentials.json; one written before routes had a login has none, and gets one. */
const CredentialsFile = Credentials.extend({ route: Login.optional() });

/**
 * Write the compose file and its NATS configs (in a directory named after
 * it), every file owner-only (0600, the directory 0700): they hold passwords.
 * `runsDir` here is a path from the working directory (made when missing);
 * the file names it relative to itself.
 * The logins in that directory's credentials.json are kept when it exists (a
 * process without one gets a new one, and so does the route when it has
 * none); without the file, every login is new. They are written there.
 */
export function writeCompose(out: string, o: Omit<ComposeOptions, 'credentials' | 'buildContext'>): string[] {
  const confDir = basename(out).replace(/\.ya?ml$/, '');
  const dir = join(dirname(out), confDir);
  const credFile = join(dir, 'credentials.json');
  const fresh = newCredentials(clusterIdentities(o.topology));
  const kept = existsSync(credFile) ? readCredentials(credFile) : undefined;
  const credentials: Credentials = kept ? { ...kept, users: { ...fresh.users, ...kept.users } } : fresh;
  const root = checkout();
  const buildContext = root === undefined ? undefined : relative(dirname(resolve(out)), root) || '.';
  // the runs folder, named relative to the file (as compose reads a bind mount: ./ or ../ first), made now so that
  // the engine does not make it (as root) at `up`
  let runsDir: string | undefined;
  if (o.runsDir !== undefined) {
    makeDirs(o.runsDir);
    const rel = relative(dirname(resolve(out)), resolve(o.runsDir)) || '.';
    runsDir = isAbsolute(rel) || rel.startsWith('.') ? rel : `./${rel}`;
  }
  const { yaml, files } = composeFile({ ...o, runsDir, credentials, buildContext }, confDir);
  privateDir(dir);
  writePrivate(credFile, `${JSON.stringify(credentials, null, 2)}\n`);
  writePrivate(out, yaml);
  const written = [out, credFile];
  for (const [name, text] of Object.entries(files)) {
    const f = join(dir, name);
    writePrivate(f, text);
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
  return { ...r.data, route: r.data.route ?? newRouteLogin(), observer: r.data.observer ?? newObserverLogin() };
}
