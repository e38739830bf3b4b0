import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { parseTopology, preset, subjects } from '@lockstep/topology';
import type { ClusterPlan } from '@lockstep/infra';
import { launch } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

/** What nats-server's /routez says of the route to the other pod's server (2 pods: one route). */
type Route = { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number };
/** What /connz says of one client connection. */
type Conn = { name?: string };

async function monitor<T>(url: string, path: string): Promise<T> {
  const r = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5000) });
  return (await r.json()) as T;
}

/**
 * The subjects on which messages reach pod `p`'s server from the other pod's (2 pods): whatever the actors served
 * there (its pod, its hosts, and for pod 0 the client) receive from actors of the other pod. Everything else the
 * run sends is in-pod and must not cross the route.
 */
function crossPodInto(run: string, p: number): string[] {
  const q = 1 - p;
  return [
    ...(p === 0 ? [subjects.clientReport(run, q)] : [subjects.podCmd(run, p)]), // the client is on pod 0's server
    subjects.hostData(run, p, '*', q, '*'),
    subjects.hostPing(run, p, '*', q),
    subjects.hostState(run, p, '*', q),
    subjects.hostExpect(run, p, '*', q),
    subjects.hostHeal(run, p, '*', q),
  ];
}

describe('the DCN is where the model says it is', () => {
  it("every process is on its own pod's server, and the route between the pods' servers carries exactly the cross-pod messages (count and bytes), no in-pod one", async () => {
    const t = parseTopology(preset('tiny'));
    let plan: ClusterPlan | undefined;
    let runId = '';
    // an observer on each pod's server of the subjects that reach it from the other pod: those messages cross the
    // route anyway (their receivers are on this server), so watching them adds nothing to what crosses
    const seen = [
      { msgs: 0, bytes: 0 },
      { msgs: 0, bytes: 0 },
    ];
    const observers: NatsConnection[] = [];
    let quiet: { routes: Route[]; names: string[][]; seen: typeof seen } | undefined;
    await launch({
      topology: t,
      steps: 12,
      runDir: join(tempDir(), 'run'),
      log: quietLog,
      auth: false,
      // awaited before any role process starts: the observers see every message
      onCluster: async (c) => {
        plan = c.plan;
        runId = c.runId;
        await Promise.all(
          c.urls.map(async (url, p) => {
            const nc = await connect({ servers: url, name: `observer/${p}` });
            observers.push(nc);
            for (const subject of crossPodInto(runId, p))
              nc.subscribe(subject, {
                callback: (_err, m) => {
                  seen[p].msgs++;
                  seen[p].bytes += m.data.length;
                },
              });
            await nc.flush();
          }),
        );
      },
      onQuiet: async () => {
        const servers = plan!.servers.filter((s) => s.pod !== null);
        const routes = await Promise.all(servers.map(async (s) => (await monitor<{ routes: Route[] }>(s.monitor!, '/routez')).routes[0]));
        // every message that reached a server before /routez answered has been handed to its observer once this round trip is done
        await Promise.all(observers.map((nc) => nc.flush()));
        const names = await Promise.all(
          servers.map(async (s) =>
            (await monitor<{ connections: Conn[] }>(s.monitor!, '/connz?state=all&limit=1000')).connections.map((x) => x.name ?? ''),
          ),
        );
        quiet = { routes, names, seen: structuredClone(seen) };
      },
    });
    await Promise.all(observers.map((nc) => nc.close()));
    expect(quiet).toBeDefined();
    const q = quiet!;
    // who connected where: each pod's processes on their pod's server, the client on pod 0's (the first it lists)
    // (unnamed: the launcher's probes of the port, which never log in)
    const own = (p: number) => q.names[p].filter((n) => n !== '' && !n.startsWith('observer')).sort();
    expect(own(0)).toEqual(['client', 'hosts/0/0', 'hosts/0/1', 'pod/0']);
    expect(own(1)).toEqual(['hosts/1/0', 'hosts/1/1', 'pod/1']);
    for (const p of [0, 1]) {
      // what came in over the route is exactly what the actors on the other pod's server sent to actors on this one
      expect(q.seen[p].msgs, `pod ${p}: messages`).toBeGreaterThan(0);
      expect(q.routes[p].in_msgs, `pod ${p}: messages in over the route`).toBe(q.seen[p].msgs);
      expect(q.routes[1 - p].out_msgs, `pod ${1 - p}: messages out over the route`).toBe(q.seen[p].msgs);
      // nats-server counts a routed message's payload bytes
      expect(q.routes[p].in_bytes, `pod ${p}: bytes in over the route`).toBe(q.seen[p].bytes);
    }
  }, 180_000);
});
