import type { Logger } from 'pino';
import type { Topology } from '@lockstep/topology';
import type { LaunchOptions, TrainResult } from '../launcher.ts';
import type { ProcessFaults } from '../faults.ts';
import { LiveRun } from './live.ts';
import { RunMetrics } from './metrics.ts';
import { RunObserver } from './observer.ts';
import { StatusServer } from './server.ts';

/** A status page serving one run: its address, the hooks to hand `launch`, and how to end it. */
export interface StatusPage {
  /** http://host:port/ */
  url: string;
  /** Hand these to `launch`: the page follows the run's record, watches its wire as `observer`, kills through its supervisor. */
  hooks: Required<Pick<LaunchOptions, 'onRecord' | 'onCluster' | 'onFaults'>>;
  /** The run is over: show its outcome, close the event streams and the server, disconnect the observer. */
  finish(outcome: { result?: TrainResult; error?: Error }): Promise<void>;
}

/**
 * Serve the status page of run `runId` on host:port (0: a free port) until
 * `finish`. The page's state is built from three sources: the launcher's run
 * record (steps, retries, exits, restarts, heals, faults, phase slices), the
 * heartbeats the `observer` NATS user hears on each pod's server, and pod 0's
 * route counters (`/routez` of its monitoring port). Throws UsageError when it
 * cannot listen there.
 */
export async function startStatusPage(o: {
  host: string;
  port: number;
  topology: Topology;
  runId: string;
  steps: number;
  log: Logger;
}): Promise<StatusPage> {
  const t = o.topology;
  const live = new LiveRun({ topology: t, runId: o.runId, steps: o.steps, supervised: true });
  const metrics = new RunMetrics();
  let faults: ProcessFaults | undefined;
  let observer: RunObserver | undefined;
  const targets = Array.from({ length: t.pods * t.hostsPerPod }, (_, i) => `host/${Math.floor(i / t.hostsPerPod)}/${i % t.hostsPerPod}`);
  const server = new StatusServer({ live, metrics, targets, kill: (target) => faults?.inject(target, 'kill') });
  const url = await server.listen(o.host, o.port);
  return {
    url,
    hooks: {
      onRecord: (record) => {
        record.subscribe((e) => {
          live.onEvent(e);
          metrics.onEvent(e);
        });
      },
      onCluster: ({ runId, urls, credentials, plan }) => {
        const monitor = plan.servers.find((s) => s.role === 'pod' && s.pod === 0)?.monitor ?? null;
        observer = new RunObserver({
          runId,
          urls,
          login: credentials?.observer,
          monitor,
          log: o.log,
          onHeartbeat: (m, at) => live.onHeartbeat(m, at),
          onRoutes: (c, at) => {
            live.onRoutes(c, at);
            metrics.onRoutes(c);
          },
        });
        void observer.start();
      },
      onFaults: (f) => {
        faults = f;
      },
    },
    async finish({ result, error }) {
      await observer?.stop();
      const summary = result ?? (error as { summary?: TrainResult } | undefined)?.summary;
      if (summary) metrics.onDuplicates(summary.duplicates);
      live.finish(error ? 'failed' : 'finished', error?.message);
      await server.close();
    },
  };
}
