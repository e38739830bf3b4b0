import { request } from 'node:http';
import { hostname } from 'node:os';
import { z } from 'zod';
import type { Topology } from '@lockstep/topology';
import { containerName } from '@lockstep/infra';
import { processName, type InjectedFault } from '../faults.ts';

/** Where the Docker engine's API listens, as compose mounts it into the `ui` service. */
export const DOCKER_SOCKET = '/var/run/docker.sock';

const WAIT_MS = 10_000;
const REQUEST_MS = 5_000;

const Inspect = z.looseObject({
  Id: z.string(),
  Name: z.string(),
  State: z.looseObject({ Running: z.boolean(), Pid: z.number() }),
  Config: z.looseObject({ Labels: z.record(z.string(), z.string()).nullable() }),
});
const Listed = z.array(z.looseObject({ Id: z.string() }));

/** One request to the engine's API over its unix socket: the status and the parsed JSON body (if any), within REQUEST_MS. */
function api(socket: string, method: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, timeout: REQUEST_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (text.length < 1 << 20) text += d;
      });
      res.on('end', () => {
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = text;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`docker ${method} ${path}: no answer within ${REQUEST_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The compose demo's kill button: a host's container killed (SIGKILL, as a
 * scenario's `kill` sends its process) and started again at once, as the
 * launcher's supervisor restarts a process; its process finds its restart
 * marker and heals from its cross-pod peer. Runs in the `ui` service, which
 * compose gives the engine's socket: it finds its own container's compose
 * project (its hostname is its container id) and the host's container by
 * compose's labels, so it never touches another project's containers.
 */
export class ContainerKiller {
  private project: string | undefined;

  constructor(
    private readonly t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>,
    private readonly socket = DOCKER_SOCKET,
    private readonly self = hostname(),
  ) {}

  private async inspect(id: string): Promise<z.infer<typeof Inspect>> {
    const r = await api(this.socket, 'GET', `/containers/${encodeURIComponent(id)}/json`);
    if (r.status !== 200) throw new Error(`docker inspect ${id}: status ${r.status}`);
    return Inspect.parse(r.body);
  }

  /** Kill the container that runs `target` (host/p/h) and start it again. Resolves to what was killed, or undefined when it was not running. */
  async inject(target: string): Promise<InjectedFault | undefined> {
    const name = processName(this.t, target);
    this.project ??= (await this.inspect(this.self)).Config.Labels?.['com.docker.compose.project'];
    if (!this.project) throw new Error(`the status page's container (${this.self}) is not a compose service: no project to kill in`);
    const filters = JSON.stringify({
      label: [`com.docker.compose.project=${this.project}`, `com.docker.compose.service=${containerName(name)}`],
    });
    const listed = await api(this.socket, 'GET', `/containers/json?filters=${encodeURIComponent(filters)}`);
    const running = Listed.parse(listed.body);
    if (running.length === 0) return undefined;
    const id = running[0].Id;
    const before = await this.inspect(id);
    const killed = await api(this.socket, 'POST', `/containers/${id}/kill?signal=SIGKILL`);
    if (killed.status === 409) return undefined; // it stopped in between
    if (killed.status !== 204) throw new Error(`docker kill ${before.Name}: status ${killed.status}`);
    const until = Date.now() + WAIT_MS;
    // down, or already started again by its restart policy (a new pid)
    for (let now = await this.inspect(id); now.State.Running && now.State.Pid === before.State.Pid; now = await this.inspect(id)) {
      if (Date.now() > until) throw new Error(`${before.Name} still runs ${WAIT_MS} ms after SIGKILL`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const started = await api(this.socket, 'POST', `/containers/${id}/start`);
    if (started.status !== 204 && started.status !== 304) throw new Error(`docker start ${before.Name}: status ${started.status}`);
    return { target, process: name, pid: before.State.Pid };
  }
}
