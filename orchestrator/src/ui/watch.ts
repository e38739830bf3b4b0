import { writeFileSync } from 'node:fs';
import { makeDirs } from '../private.ts';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Topology } from '@lockstep/topology';
import type { Login } from '@lockstep/infra';
import type { InjectedFault } from '../faults.ts';
import { nowMicros, RunRecorder } from '../record/recorder.ts';
import { StreamCollector } from '../record/streams.ts';
import type { SummaryLine } from '../protocol.ts';
import { LiveRun } from './live.ts';
import { RunMetrics } from './metrics.ts';
import { RunObserver } from './observer.ts';
import { StatusServer } from './server.ts';

/** How often the stream files are read (the trace's lines reach it at most this late, as in a launcher's run). */
const POLL_MS = 200;
/** After the client's summary, how long the other processes' exits (their last lines before them) are waited for at most before the record is closed. */
const SETTLE_MS = 20_000;

/**
 * The status page of a run this process did not start (`lockstep watch`: the
 * compose demo's `ui` service, the testcontainers helper's recorder), as the
 * `observer` NATS user: the hosts' and pods' heartbeats on each pod's server
 * and pod 0's route counters. From the wire alone it shows the client's
 * committed steps (loss, hash, whether the pods agree, step time).
 *
 * With `record`, it also keeps the run's record as a launcher does
 * (summary.json, steps.jsonl, events.jsonl, trace.json in `record.runDir`)
 * from the processes' stream files (`StreamCollector`), and the page then
 * shows what a launcher's does: phase timelines, retries, exits and
 * restarts, heals. With `kill`, the page's kill buttons are on and call it
 * (in compose: the host's container killed and started again); each kill is
 * recorded as a fault. Serves until `stop`, which reads the streams a last
 * time and closes the record (a run that ended without the client's summary
 * is recorded as stopped).
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
  record?: { runDir: string; streams: string };
  kill?: (target: string) => Promise<InjectedFault | undefined>;
  /** The record is closed (its run directory). */
  onRecorded?: (runDir: string) => void;
}): Promise<{ url: string; stop: () => Promise<void> }> {
  const t = o.topology;
  const hosts = Array.from({ length: t.pods * t.hostsPerPod }, (_, i) => `host/${Math.floor(i / t.hostsPerPod)}/${i % t.hostsPerPod}`);
  const live = new LiveRun({
    topology: t,
    runId: o.runId,
    steps: o.steps,
    supervised: o.record !== undefined,
    killable: o.kill !== undefined,
  });
  const metrics = new RunMetrics();
  let recorder: RunRecorder | undefined;
  let collector: StreamCollector | undefined;
  let timer: NodeJS.Timeout | undefined;
  const runEvent = { kind: 'run' as const, actor: 'watch', runId: o.runId, topology: t.name, steps: o.steps, pid: process.pid };
  let ended = false;
  let summary: SummaryLine | undefined;
  const end = (s: SummaryLine | undefined, message?: string) => {
    if (ended || !recorder) return;
    ended = true;
    const failed = !s || s.failure !== null;
    const why = s ? (s.failure?.message ?? undefined) : message;
    recorder.record({ ...runEvent, at: nowMicros(), state: failed ? 'failed' : 'finished', ...(why ? { message: why } : {}) });
    recorder.close(s ? { ...s, runDir: o.record?.runDir } : { error: { name: 'Interrupted', message: message ?? 'stopped' } });
    live.finish(failed ? 'failed' : 'finished', why);
    if (timer) clearInterval(timer);
    o.onRecorded?.(o.record?.runDir ?? '');
  };
  if (o.record) {
    makeDirs(o.record.runDir, 0o700);
    // what `lockstep runs` and `status` read: the run's id and steps, its topology
    writeFileSync(join(o.record.runDir, 'run.json'), `${JSON.stringify({ runId: o.runId, steps: o.steps })}\n`);
    writeFileSync(join(o.record.runDir, 'topology.json'), `${JSON.stringify(t, null, 2)}\n`);
    recorder = new RunRecorder(o.record.runDir, { hosts, log: o.log });
    recorder.subscribe((e) => {
      live.onEvent(e);
      metrics.onEvent(e);
    });
    recorder.record({ ...runEvent, at: nowMicros(), state: 'started' });
    // the hosts' last slices come after the client's summary: the record closes once every process said it exited
    // (each does before it lingers), SETTLE_MS after the summary at most, or when stopped
    let summaryAt = 0;
    const c = new StreamCollector(o.record.streams, recorder, {
      log: o.log,
      onSummary: (s) => {
        summary = s;
        summaryAt = Date.now();
      },
    });
    collector = c;
    timer = setInterval(() => {
      c.poll();
      if (summary && (c.allExited() || Date.now() - summaryAt > SETTLE_MS)) end(summary);
    }, POLL_MS);
  }
  const kill = o.kill;
  const server = new StatusServer({
    live,
    metrics,
    targets: kill ? hosts : [],
    kill: async (target) => {
      if (!kill) return undefined;
      const done = await kill(target);
      if (done)
        recorder?.record({
          kind: 'fault',
          actor: target,
          at: nowMicros(),
          action: 'kill',
          detail: `container ${done.process} (pid ${done.pid})`,
        });
      return done;
    },
  });
  const url = await server.listen(o.host, o.port);
  const observer = new RunObserver({
    runId: o.runId,
    urls: o.urls,
    login: o.login,
    monitor: o.monitor,
    log: o.log,
    onHeartbeat: (m, at) => live.onHeartbeat(m, at),
    // recording, the steps come from the client's stream with their phase times; from the wire, without
    onCommitted: recorder
      ? () => {}
      : (m, at) => {
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
      if (timer) clearInterval(timer);
      collector?.poll(); // the last lines, the client's summary among them if it got that far
      end(summary, 'the status page stopped before the client reported its summary');
      await observer.stop();
      await server.close();
    },
  };
}
