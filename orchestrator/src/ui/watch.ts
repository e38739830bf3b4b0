import type { Logger } from 'pino';
import type { Topology } from '@lockstep/topology';
import type { Login } from '@lockstep/infra';
import { LiveRun } from './live.ts';
import { RunMetrics } from './metrics.ts';
import { RunObserver } from './observer.ts';
import { StatusServer } from './server.ts';

/**
 * The status page of a run this process did not start (`lockstep watch`: the
 * compose demo's `ui` service), built from the wire alone, as the `observer`
 * NATS user: the hosts' and pods' heartbeats on each pod's server, the
 * client's committed steps (loss, hash, whether the pods agree, step time) and
 * pod 0's route counters. Without the launcher there are no phase times,
 * retries or restarts to show and no supervisor to kill with: the kill
 * buttons are off. Serves until `stop`.
 */
export async function watchRun(o: {
  host: string;
  port: number;
  topology: Topology;
  runId: string;
  steps: number;
  /** Each pod's server URL, by pod. */
  urls: string[];
  monitor: string | null;
  login: Login | undefined;
  log: Logger;
}): Promise<{ url: string; stop: () => Promise<void> }> {
  const live = new LiveRun({ topology: o.topology, runId: o.runId, steps: o.steps, supervised: false });
  const metrics = new RunMetrics();
  const server = new StatusServer({ live, metrics, targets: [], kill: () => undefined });
  const url = await server.listen(o.host, o.port);
  const observer = new RunObserver({
    runId: o.runId,
    urls: o.urls,
    login: o.login,
    monitor: o.monitor,
    log: o.log,
    onHeartbeat: (m, at) => live.onHeartbeat(m, at),
    onCommitted: (m, at) => {
      const step = live.onCommitted(m, at);
      if (step) metrics.onEvent(step);
    },
    onRoutes: (c, at) => {
      live.onRoutes(c, at);
      metrics.onRoutes(c);
    },
  });
  await observer.start();
  return {
    url,
    stop: async () => {
      await observer.stop();
      await server.close();
    },
  };
}
