import { describe, expect, it } from 'vitest';
import { createActor, waitFor, type SnapshotFrom } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { describeFailure, parseTopology, preset, subjects, type FailureCause, type RunLogRecord } from '@lockstep/topology';
import { clientMachine, systemClock, ticker, type ClientEvent, type OneWireCommand } from '../src/index.ts';
import { controlSent, manualClock, memoryRunLog, noCheckpoints, now, recordingWire } from './helpers.ts';

const RUN = 'test-run';
// most tests here follow one step at a time; the pipeline (dispatch.depth > 1) has its own, below
const t = parseTopology({ ...preset('tiny'), dispatch: { depth: 1 } });
const t2 = parseTopology({ ...preset('tiny'), dispatch: { depth: 2 } });
const H = (n: number) => n.toString(16).padStart(64, '0');
type Snap = SnapshotFrom<typeof clientMachine>;
let n = 0;
const env = (step: number, attempt: number, pod: number) => ({
  v: 1 as const,
  runId: RUN,
  step,
  attempt,
  sender: `pod/${pod}`,
  msgId: `m${n++}`,
});
const prepared = (pod: number, step: number, attempt: number, hash: string, lossSum = 0.25): ClientEvent => ({
  type: 'pod.prepared',
  msg: {
    ...env(step, attempt, pod),
    kind: 'pod.prepared',
    paramsHash: hash,
    shardHashes: [hash],
    lossSum,
    phaseMs: { exchange: 2 },
    waitedMs: 0,
  },
  at: now(),
});
const committed = (pod: number, step: number, attempt: number, hash: string): ClientEvent => ({
  type: 'pod.committed',
  msg: { ...env(step, attempt, pod), kind: 'pod.committed', paramsHash: hash },
  at: now(),
});
const aborted = (pod: number, step: number, attempt: number): ClientEvent => ({
  type: 'pod.aborted',
  msg: { ...env(step, attempt, pod), kind: 'pod.aborted' },
  at: now(),
});
const stopped = (pod: number): ClientEvent => ({
  type: 'pod.stopped',
  msg: { ...env(0, 0, pod), kind: 'pod.stopped', rejected: { schema: pod + 1 }, duplicates: 1, faultsInjected: 2 },
  at: now(),
});
/** A pod's heartbeat saying all its hosts are up. */
const up = (pod: number, step = 0, attempt = 0, phase = 'idle'): ClientEvent => ({
  type: 'pod.heartbeat',
  msg: { ...env(step, attempt, pod), kind: 'pod.heartbeat', phase, ready: true, silentHosts: [], lostHosts: [] },
  at: now(),
});
/** What host 3 of a pod tells it when the exchange deadline passes with nothing from its peer in the other pod. */
const exchangeDeadline = (pod: number): FailureCause => ({
  kind: 'deadline',
  actor: `host/${pod}/3`,
  phase: 'exchange',
  ms: 100,
  waitingFor: 'grad.exchange',
  peers: [{ actor: `host/${1 - pod}/3` }],
});
const failed = (pod: number, step: number, attempt: number): ClientEvent => ({
  type: 'pod.failed',
  msg: { ...env(step, attempt, pod), kind: 'pod.failed', host: 3, cause: exchangeDeadline(pod) },
  at: now(),
});

/** Every pod says all its hosts are up: the client leaves `joining` (the run starts). */
function joinPods<A extends { send: (e: ClientEvent) => void }>(a: A): A {
  for (let p = 0; p < t.pods; p++) a.send(up(p));
  return a;
}

function start(steps: number, topology = t) {
  const sent: OneWireCommand[] = [];
  const a = createActor(
    clientMachine.provide({
      actors: { wire: recordingWire(sent), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: manualClock().actor },
    }),
    { input: { topology, runId: RUN, incarnation: 'test', now: now(), steps } },
  );
  a.subscribe({ error: () => {} });
  return { a: joinPods(a.start()), sent };
}

describe('client machine', () => {
  it('commits a step only when every pod prepared it with the same hash, then moves on', () => {
    const { a, sent } = start(2);
    expect(controlSent(sent, 'step.dispatch').length).toBe(2);
    a.send(prepared(0, 0, 0, H(1)));
    expect(controlSent(sent, 'step.commit').length).toBe(0);
    a.send(prepared(1, 0, 0, H(1), 0.5));
    expect(controlSent(sent, 'step.commit').length).toBe(2);
    const records: number[] = [];
    a.on('step.committed', (r) => records.push(r.loss));
    a.send(committed(0, 0, 0, H(1)));
    a.send(committed(1, 0, 0, H(1)));
    expect(records).toEqual([0.75]);
    expect(controlSent(sent, 'step.dispatch').map((m) => m.step)).toEqual([0, 0, 1, 1]);
    a.send(prepared(0, 1, 0, H(2)));
    a.send(prepared(1, 1, 0, H(2)));
    a.send(committed(0, 1, 0, H(2)));
    a.send(committed(1, 1, 0, H(2)));
    expect(controlSent(sent, 'run.end').length).toBe(2);
    a.send(stopped(0));
    a.send(stopped(1));
    expect(a.getSnapshot().status).toBe('done');
    expect(a.getSnapshot().output).toMatchObject({
      stepsCommitted: 2,
      paramsHash: H(2),
      rejected: { schema: 3 },
      duplicates: 2,
      failure: undefined,
    });
  });

  it('different hashes abort the step and end the run with a hashMismatch cause naming the step and every pod hash', () => {
    const { a, sent } = start(5);
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(2)));
    expect(controlSent(sent, 'step.commit').length).toBe(0);
    expect(controlSent(sent, 'step.abort').length).toBe(2);
    a.send(aborted(0, 0, 0));
    a.send(aborted(1, 0, 0));
    a.send(stopped(0));
    a.send(stopped(1));
    const out = a.getSnapshot().output!;
    expect(out.failure).toEqual({
      step: 0,
      attempt: 0,
      cause: {
        kind: 'hashMismatch',
        hashes: [
          { pod: 0, paramsHash: H(1) },
          { pod: 1, paramsHash: H(2) },
        ],
      },
    });
    expect(out.retried).toEqual([]); // a mismatch is a bug, not a fault: never retried
    expect(describeFailure(out.failure)).toBe('step 0: parameter hashes differ: pod/0=000000000000, pod/1=000000000000');
  });

  it("a pod failure aborts the attempt everywhere and retries it, up to maxAttempts; then ends with the host's cause as the pod relayed it", () => {
    const { a, sent } = start(5);
    for (let attempt = 0; attempt < t.recovery.maxAttempts; attempt++) {
      expect(controlSent(sent, 'step.dispatch').filter((m) => m.attempt === attempt).length).toBe(2);
      a.send(failed(1, 0, attempt));
      expect(controlSent(sent, 'step.abort').filter((m) => m.attempt === attempt).length).toBe(2);
      a.send(aborted(0, 0, attempt));
      a.send(failed(1, 0, attempt)); // pod 1 cannot confirm; the next dispatch supersedes it anyway
      a.send(up(0));
      a.send(up(1));
    }
    expect(controlSent(sent, 'step.dispatch').length).toBe(2 * t.recovery.maxAttempts);
    expect(controlSent(sent, 'run.end').length).toBe(2);
    a.send(stopped(0));
    a.send(stopped(1));
    const out = a.getSnapshot().output!;
    expect(out.retried.map((r) => r.attempt)).toEqual([0, 1]);
    expect(out.retried.map((r) => r.cause.kind)).toEqual(['deadline', 'deadline']);
    expect(out.failure).toEqual({ step: 0, attempt: 2, pod: 1, host: 3, cause: exchangeDeadline(1) });
    expect(describeFailure(out.failure)).toBe(
      'step 0 (pod/1 reports from host/1/3): host/1/3: deadline of 100 ms exceeded in exchange: no grad.exchange from host/0/3',
    );
  });

  it('resends a commit that gets no answer, each time under a new message id', async () => {
    const quick = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 20, misses: 2 },
      deadlines: { startupMs: 1000, phaseMs: 1000, stepMs: 1000 },
    });
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      { input: { topology: quick, runId: RUN, incarnation: 'test', now: now(), steps: 1 } },
    );
    joinPods(a.start());
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(1)));
    a.send(committed(0, 0, 0, H(1))); // pod 1's confirmation is lost
    await waitFor(a, (s) => s.context.resends >= 2, { timeout: 5000 });
    const commits = controlSent(sent, 'step.commit');
    expect(commits.length).toBeGreaterThanOrEqual(4);
    expect(new Set(commits.map((m) => m.msgId)).size).toBe(commits.length);
    // resent only to the pod that has not confirmed: pod 0, restarted since, would take it for a step to commit
    // (lockstep sim --seed 259 --faults all, at depth 2: its hosts had healed past it, and the run stalled)
    const resentTo = sent.flatMap((c) => (c.type === 'wire.send' && c.message.kind === 'step.commit' ? [c.subject] : [])).slice(2);
    expect(resentTo.length).toBeGreaterThanOrEqual(2);
    expect(new Set(resentTo)).toEqual(new Set([subjects.podCmd(RUN, 1)]));
    a.send(committed(1, 0, 0, H(1)));
    expect(a.getSnapshot().context.stepsCommitted).toBe(1);
    a.stop();
  });

  it('a pod scheduler that stops heartbeating fails the attempt, named; the attempt is retried', async () => {
    const quick = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 20, misses: 3 },
      deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 5000 },
    });
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: ticker(systemClock) },
      }),
      { input: { topology: quick, runId: RUN, incarnation: 'test', now: now(), steps: 1 } },
    );
    joinPods(a.start());
    const beat = (pod: number): ClientEvent => ({
      type: 'pod.heartbeat',
      msg: { ...env(0, 0, pod), kind: 'pod.heartbeat', phase: 'running', ready: true, silentHosts: [], lostHosts: [] },
      at: now(),
    });
    const until = Date.now() + 1000;
    while (Date.now() < until && a.getSnapshot().context.retried.length === 0) {
      a.send(beat(0)); // pod 0 keeps beating; pod 1 has gone quiet
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(controlSent(sent, 'step.abort').filter((m) => m.attempt === 0).length).toBe(2);
    const [retried] = a.getSnapshot().context.retried;
    expect(retried).toMatchObject({ step: 0, attempt: 0, cause: { kind: 'silent', actor: 'pod/1', lastPhase: 'idle' } });
    expect(retried.pod).toBeUndefined(); // found by the client itself
    expect(retried.cause.kind === 'silent' && retried.cause.ms).toBeGreaterThan(quick.heartbeat.intervalMs * quick.heartbeat.misses);
    // the retry waits until both pods say, after the failure, that their hosts are up
    expect(controlSent(sent, 'step.dispatch').some((m) => m.attempt === 1)).toBe(false);
    a.send(up(0));
    expect(controlSent(sent, 'step.dispatch').some((m) => m.attempt === 1)).toBe(false);
    a.send(up(1));
    expect(controlSent(sent, 'step.dispatch').filter((m) => m.attempt === 1).length).toBe(2);
    a.stop();
  });

  it('a pod idle well after the dispatch (restarted, or the dispatch was lost) fails the attempt', async () => {
    const quick = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 200, misses: 3 },
      deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 5000 },
    });
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      { input: { topology: quick, runId: RUN, incarnation: 'test', now: now(), steps: 1 } },
    );
    joinPods(a.start());
    a.send(up(1)); // at once: its heartbeat may predate the dispatch
    expect(a.getSnapshot().context.retried).toEqual([]);
    await new Promise((r) => setTimeout(r, 450));
    a.send(up(0, 0, 0, 'running'));
    a.send(up(1));
    expect(controlSent(sent, 'step.abort').filter((m) => m.attempt === 0).length).toBe(2);
    await waitFor(a, (s) => s.context.retried.length === 1, { timeout: 2000 });
    expect(a.getSnapshot().context.retried[0]).toEqual({ step: 0, attempt: 0, cause: { kind: 'idle', actor: 'pod/1' } });
    a.stop();
  });

  it('ends the run when a pod does not come back within the start-up deadline', async () => {
    const quick = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 10, misses: 3 },
      deadlines: { startupMs: 100, phaseMs: 100, stepMs: 5000 },
    });
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      { input: { topology: quick, runId: RUN, incarnation: 'test', now: now(), steps: 1 } },
    );
    joinPods(a.start());
    a.send(failed(1, 0, 0));
    a.send(aborted(0, 0, 0));
    a.send(aborted(1, 0, 0));
    a.send(up(0));
    await waitFor(a, (s) => s.context.failure?.cause.kind === 'podsNotReady', { timeout: 2000 });
    expect(a.getSnapshot().context.failure!.cause).toEqual({ kind: 'podsNotReady', ms: 100, pods: [{ pod: 1, silentHosts: [] }] });
    expect(describeFailure(a.getSnapshot().context.failure)).toBe('step 0: not ready within 100 ms: pod/1 (scheduler silent)');
    expect(controlSent(sent, 'step.dispatch').some((m) => m.attempt === 1)).toBe(false);
    a.stop();
  });

  it('a retried attempt that succeeds commits the step', () => {
    const { a, sent } = start(1);
    a.send(failed(0, 0, 0));
    a.send(aborted(0, 0, 0));
    a.send(aborted(1, 0, 0));
    a.send(up(0));
    a.send(up(1));
    a.send(prepared(0, 0, 1, H(3)));
    a.send(prepared(1, 0, 1, H(3)));
    expect(controlSent(sent, 'step.commit').map((m) => m.attempt)).toEqual([1, 1]);
    a.send(committed(0, 0, 1, H(3)));
    a.send(committed(1, 0, 1, H(3)));
    a.send(stopped(0));
    a.send(stopped(1));
    expect(a.getSnapshot().output).toMatchObject({
      stepsCommitted: 1,
      paramsHash: H(3),
      failure: undefined,
      retried: [{ step: 0, attempt: 0 }],
    });
  });

  it('logs the decision before any pod hears of the commit; a step the log refuses is never committed', () => {
    const records: RunLogRecord[] = [{ step: 0, attempt: 0, paramsHash: H(7), loss: 1, at: 'then' }]; // step 0 already logged: a zombie's decision
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog(records), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      { input: { topology: t, runId: RUN, incarnation: 'test', now: now(), steps: 3 } },
    );
    joinPods(a.start());
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(1)));
    expect(controlSent(sent, 'step.commit')).toEqual([]);
    expect(controlSent(sent, 'step.abort').length).toBe(2);
    a.send(aborted(0, 0, 0));
    a.send(aborted(1, 0, 0));
    expect(controlSent(sent, 'run.end').length).toBe(2);
    expect(a.getSnapshot().context.failure!.cause).toEqual({
      kind: 'runLog',
      problem: 'conflict',
      detail: `step 0 was committed with paramsHash ${H(7).slice(0, 12)}, now ${H(1).slice(0, 12)}`,
    });
    expect(a.getSnapshot().context.retried).toEqual([]); // a conflict is never retried
    expect(records.length).toBe(1);
    a.stop();
  });

  it('a restarted client finishes the logged commit first, then goes on past any attempt a pod has seen', () => {
    const records: RunLogRecord[] = [0, 1, 2].map((step) => ({ step, attempt: 0, paramsHash: H(step + 1), loss: 0.5, at: 'then' }));
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog(records), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      {
        input: { topology: t, runId: RUN, incarnation: 'test', now: now(), steps: 5, resume: records[2] },
      },
    );
    a.start();
    // the old client died while committing step 2: pod 0 had committed it, pod 1 not yet
    a.send(up(0, 3));
    a.send(up(1, 2, 0, 'prepared'));
    const emitted: { step: number; recovered?: boolean }[] = [];
    a.on('step.committed', (r) => emitted.push({ step: r.step, recovered: r.recovered }));
    expect(controlSent(sent, 'step.commit').map((m) => [m.step, m.attempt])).toEqual([
      [2, 0],
      [2, 0],
    ]);
    expect(controlSent(sent, 'step.dispatch')).toEqual([]);
    a.send(committed(0, 2, 0, H(3)));
    a.send(committed(1, 2, 0, H(3)));
    expect(emitted).toEqual([{ step: 2, recovered: true }]);
    a.send(up(0, 3, 1, 'running')); // pod 0 was running attempt 1 of step 3 when the old client died
    a.send(up(1, 3, 0));
    expect(controlSent(sent, 'step.dispatch').map((m) => [m.step, m.attempt])).toEqual([
      [3, 2],
      [3, 2],
    ]);
    a.send(prepared(0, 3, 2, H(4)));
    a.send(prepared(1, 3, 2, H(4)));
    expect(records.map((r) => r.step)).toEqual([0, 1, 2, 3]);
    a.stop();
  });

  describe('a restarted client learns where the pods are before it acts', () => {
    /** A restarted client of a run whose log holds steps 0..5 (a checkpoint restore sent the pods back; they replay). */
    function restarted() {
      const records: RunLogRecord[] = [0, 1, 2, 3, 4, 5].map((step) => ({
        step,
        attempt: 0,
        paramsHash: H(step + 1),
        loss: step + 0.5,
        at: 'then',
      }));
      const sent: OneWireCommand[] = [];
      const a = createActor(
        clientMachine.provide({
          actors: { wire: recordingWire(sent), runlog: memoryRunLog(records), checkpoints: noCheckpoints(), clock: manualClock().actor },
        }),
        { input: { topology: t, runId: RUN, incarnation: 'test-2', now: now(), steps: 8, resume: records[5] } },
      );
      const emitted: { step: number; attempt: number; loss: number; recovered?: boolean; replayed?: boolean }[] = [];
      a.on('step.committed', (r) =>
        emitted.push({
          step: r.step,
          attempt: r.attempt,
          loss: r.loss,
          ...(r.recovered ? { recovered: true } : {}),
          ...(r.replayed ? { replayed: true } : {}),
        }),
      );
      return { a: a.start(), sent, records, emitted };
    }

    it('pods replaying step 2 (attempt 4) behind the logged step 5: it goes on replaying from step 2, never commits step 5 out of turn', () => {
      const { a, sent, records, emitted } = restarted();
      a.send(up(0, 2, 4, 'running'));
      a.send(up(1, 2, 4, 'prepared'));
      expect(controlSent(sent, 'step.commit')).toEqual([]); // today's client resent step 5's commit to pods at step 2
      // as before any retry, it waits for every pod's next word that all its hosts are up
      a.send(up(0, 2, 4, 'running'));
      a.send(up(1, 2, 4, 'prepared'));
      const dispatched = controlSent(sent, 'step.dispatch').map((m) => [m.step, m.attempt]);
      expect(dispatched.length).toBe(2);
      const [[step, attempt]] = dispatched;
      expect(step).toBe(2);
      expect(attempt).toBeGreaterThan(4); // above every attempt a pod has seen (and any an earlier client used)
      for (const s of [2, 3, 4, 5, 6]) {
        const at = controlSent(sent, 'step.dispatch').at(-1)!;
        expect(at.step).toBe(s);
        a.send(prepared(0, s, at.attempt, H(s + 1)));
        a.send(prepared(1, s, at.attempt, H(s + 1)));
        a.send(committed(0, s, at.attempt, H(s + 1)));
        a.send(committed(1, s, at.attempt, H(s + 1)));
      }
      // steps 2..4 are replays (each taken by the run log only with its logged hash); step 6 is new; the logged step 5,
      // whose commit an earlier life may never have reported (a restore, then this restart, cut it short), is reported
      // as a finished commit (recovered), not only as a replay
      expect(emitted.map((e) => [e.step, e.replayed ?? false, e.recovered ?? false])).toEqual([
        [2, true, false],
        [3, true, false],
        [4, true, false],
        [5, false, true],
        [6, false, false],
      ]);
      expect(records.map((r) => r.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      expect(a.getSnapshot().context.failure).toBeUndefined();
      a.stop();
    });

    it('pods that committed (or commit) a replayed step: it finishes that commit at the attempt they prepared, with the logged record, then replays on', async () => {
      const { a, sent, emitted } = restarted();
      a.send(up(0, 3)); // pod 0 committed step 2 of the replay
      a.send(up(1, 2, 7, 'prepared')); // pod 1 prepared attempt 7 of it and never heard the commit
      await waitFor(a, (s) => s.matches('committing'));
      expect(controlSent(sent, 'step.commit').map((m) => [m.step, m.attempt])).toEqual([
        [2, 7],
        [2, 7],
      ]);
      a.send(committed(0, 2, 7, H(3)));
      a.send(committed(1, 2, 7, H(3)));
      expect(emitted).toEqual([{ step: 2, attempt: 7, loss: 2.5, recovered: true, replayed: true }]);
      a.send(up(0, 3));
      a.send(up(1, 3));
      const next = controlSent(sent, 'step.dispatch').map((m) => [m.step, m.attempt]);
      expect(next.length).toBe(2);
      expect(next[0][0]).toBe(3);
      expect(next[0][1]).toBeGreaterThan(7);
      a.stop();
    });

    it('pods that hold the logged step (prepared, or committed it): it finishes that commit, as before', () => {
      const { a, sent } = restarted();
      a.send(up(0, 6));
      a.send(up(1, 5, 0, 'committing'));
      expect(controlSent(sent, 'step.commit').map((m) => [m.step, m.attempt])).toEqual([
        [5, 0],
        [5, 0],
      ]);
      expect(controlSent(sent, 'step.dispatch')).toEqual([]);
      a.stop();
    });

    it('pods past the logged step (they committed it in a replay, at another attempt than the logged one): no commit, it goes on', () => {
      const { a, sent, emitted } = restarted();
      a.send(up(0, 6, 9, 'prepared'));
      a.send(up(1, 6, 9, 'prepared'));
      a.send(up(0, 6, 9, 'prepared'));
      a.send(up(1, 6, 9, 'prepared'));
      expect(controlSent(sent, 'step.commit')).toEqual([]); // a commit of (5, 0) would be refused: the pods committed (5, 9)
      // step 5 is recorded as committed from its logged record (its predecessor may not have said so before it died)
      expect(emitted).toEqual([{ step: 5, attempt: 0, loss: 5.5, recovered: true }]);
      const next = controlSent(sent, 'step.dispatch').map((m) => [m.step, m.attempt]);
      expect(next.map(([step]) => step)).toEqual([6, 6]);
      expect(next[0][1]).toBeGreaterThan(9);
      a.stop();
    });

    it('pods restoring a checkpoint (its predecessor asked them): it waits until they are done, then replays from where they are', () => {
      const { a, sent } = restarted();
      a.send(up(0, 2, 0, 'restoring'));
      a.send(up(1, 2, 0, 'restoring'));
      expect(sent.filter((c) => c.type === 'wire.send')).toEqual([]);
      a.send(up(0, 0));
      a.send(up(1, 0));
      a.send(up(0, 0));
      a.send(up(1, 0));
      expect(controlSent(sent, 'step.commit')).toEqual([]);
      expect(controlSent(sent, 'step.dispatch').map((m) => m.step)).toEqual([0, 0]);
      a.stop();
    });
  });

  it('a pod.stopped while the run goes on ends it at once, naming the pod, and keeps its counts', () => {
    const { a, sent } = start(5);
    joinPods(a);
    expect(controlSent(sent, 'step.dispatch').length).toBe(2);
    a.send(stopped(1)); // pod 1 ended early: today this was rejected and its counts lost
    expect(a.getSnapshot().context.failure).toEqual({ step: 0, attempt: 0, pod: 1, cause: { kind: 'stopped', actor: 'pod/1' } });
    expect(controlSent(sent, 'run.end').length).toBe(2);
    a.send(stopped(0));
    expect(a.getSnapshot().status).toBe('done');
    const out = a.getSnapshot().output!;
    expect(out.podsReported).toBe(2);
    expect(out.rejected).toEqual({ schema: 3 });
    expect(describeFailure(out.failure)).toBe(
      'step 0 (pod/1 reports): pod/1 stopped while the run was still going (it takes no more steps)',
    );
  });

  it('every checkpoint.everySteps-th committed step, asks its checkpoint store to write the manifest; the run log stamps the time', () => {
    const every2 = parseTopology({ ...preset('tiny'), checkpoint: { everySteps: 2, keep: 3 } });
    const manifests: Parameters<typeof noCheckpoints>[0] = [];
    const records: RunLogRecord[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: {
          wire: recordingWire([]),
          runlog: memoryRunLog(records),
          checkpoints: noCheckpoints(manifests),
          clock: manualClock().actor,
        },
      }),
      { input: { topology: every2, runId: RUN, incarnation: 'test', now: now(), steps: 2 } },
    );
    joinPods(a.start());
    const shards = [H(11), H(12)]; // one shard hash per host of a pod
    for (const step of [0, 1]) {
      for (const pod of [0, 1]) {
        const p = prepared(pod, step, 0, H(step + 1)) as Extract<ClientEvent, { type: 'pod.prepared' }>;
        a.send({ ...p, msg: { ...p.msg, shardHashes: shards } });
      }
      expect(manifests.length).toBe(0); // nothing before the commit is confirmed
      a.send(committed(0, step, 0, H(step + 1)));
      a.send(committed(1, step, 0, H(step + 1)));
    }
    expect(manifests).toEqual([
      { format: 'lockstep-checkpoint/1', runId: RUN, step: 1, attempt: 0, paramsHash: H(2), shardHashes: shards, pods: 2 },
    ]);
    expect(records.map((r) => [r.step, typeof r.at])).toEqual([
      [0, 'string'],
      [1, 'string'],
    ]);
    a.stop();
  });

  it('graph walk: on every path, commit follows only a full set of agreeing prepares', () => {
    const machine = clientMachine.provide({
      actors: { wire: recordingWire([]), runlog: memoryRunLog([]), checkpoints: noCheckpoints(), clock: manualClock().actor },
    });
    const events = (s: Snap): ClientEvent[] => {
      const { step, attempt } = s.context;
      return [
        prepared(0, step, attempt, H(1)),
        prepared(1, step, attempt, H(1)),
        prepared(1, step, attempt, H(9)),
        committed(0, step, attempt, H(1)),
        committed(1, step, attempt, H(1)),
        aborted(0, step, attempt),
        aborted(1, step, attempt),
        failed(0, step, attempt),
        { type: 'log.appended', step }, // the run log's answer (the graph walk does not run the log actor)
        up(0), // the pods say their hosts are up: the run starts
        up(1),
        prepared(0, step + 1, attempt, H(1)), // future: must be rejected
        committed(1, Math.max(0, step - 1), attempt, H(1)), // stale or not-yet: rejected unless in order
      ];
    };
    const paths = getShortestPaths(machine, {
      input: { topology: t, runId: RUN, incarnation: 'test', now: now(), steps: 3 },
      events: (s) => events(s as Snap),
      serializeState: (s) => {
        const c = (s as Snap).context;
        return JSON.stringify([
          (s as Snap).value,
          c.step,
          c.attempt,
          [...c.prepared.entries()].map(([k, v]) => [k, v.paramsHash]),
          [...c.committed.keys()],
          [...c.aborted],
          c.heardSinceWait,
        ]);
      },
    });
    let commits = 0;
    for (const p of paths) {
      for (let i = 1; i < p.steps.length; i++) {
        const before = p.steps[i - 1].state as Snap;
        const next = p.steps[i].state as Snap;
        if (next.matches('committing') && !before.matches('committing')) {
          commits++;
          const hashes = [...next.context.prepared.values()].map((m) => m.paramsHash);
          expect(hashes.length).toBe(t.pods);
          expect(new Set(hashes).size).toBe(1);
        }
      }
    }
    expect(commits).toBeGreaterThan(0);
    expect(paths.some((p) => (p.state as Snap).context.failure?.cause.kind === 'hashMismatch')).toBe(true);
    expect(paths.some((p) => (p.state as Snap).context.stepsCommitted === 3)).toBe(true);
  });
});

describe('client machine, a restore while a logged step commits', () => {
  it('the logged step is committed: replayed up to it, it is reported once, as a commit finished late (recovered), not as a replay', () => {
    const { a } = start(2);
    const records: { step: number; recovered?: boolean; replayed?: boolean }[] = [];
    a.on('step.committed', (r) => records.push({ step: r.step, recovered: r.recovered, replayed: r.replayed }));
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(1)));
    expect(a.getSnapshot().matches('committing')).toBe(true); // step 0 is logged
    // before any pod confirms, pod 1 says a host is lost (no replica of its shard left): restore, and replay up to step 0
    a.send({
      type: 'pod.heartbeat',
      msg: { ...env(0, 0, 1), kind: 'pod.heartbeat', phase: 'committing', ready: false, silentHosts: [], lostHosts: [1] },
      at: now(),
    });
    expect(a.getSnapshot().matches('restoring')).toBe(true);
    for (const p of [0, 1])
      a.send({
        type: 'pod.restored',
        msg: { ...env(0, 0, p), kind: 'pod.restored', checkpoint: -1, paramsHash: H(0) },
        at: now(),
      });
    a.send(up(0));
    a.send(up(1));
    const { attempt } = a.getSnapshot().context;
    a.send(prepared(0, 0, attempt, H(1)));
    a.send(prepared(1, 0, attempt, H(1)));
    a.send(committed(0, 0, attempt, H(1)));
    a.send(committed(1, 0, attempt, H(1)));
    a.send(prepared(0, 1, attempt, H(2)));
    a.send(prepared(1, 1, attempt, H(2)));
    a.send(committed(0, 1, attempt, H(2)));
    a.send(committed(1, 1, attempt, H(2)));
    expect(records).toEqual([
      { step: 0, recovered: true, replayed: undefined },
      { step: 1, recovered: undefined, replayed: undefined },
    ]);
  });
});

describe('client machine, steps in flight (dispatch.depth 2)', () => {
  const dispatched = (sent: OneWireCommand[]) =>
    (controlSent(sent, 'step.dispatch') as { step: number; attempt: number; committed: number }[]).map((m) => [
      m.step,
      m.attempt,
      m.committed,
    ]);

  it('dispatches step s+1 with step s, keeps the reports on s+1 until s is committed, commits in order, and dispatches s+2 as s commits', () => {
    const { a, sent } = start(3, t2);
    // step 0 and step 1 at once, to both pods, each saying nothing is committed yet
    expect(dispatched(sent)).toEqual([
      [0, 0, -1],
      [0, 0, -1],
      [1, 0, -1],
      [1, 0, -1],
    ]);
    expect(a.getSnapshot().context.ahead.map((x) => x.step)).toEqual([1]);
    // step 1 is prepared first: kept, not committed before step 0
    a.send(prepared(0, 1, 0, H(2)));
    a.send(prepared(1, 1, 0, H(2)));
    expect(controlSent(sent, 'step.commit')).toEqual([]);
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(1)));
    expect(controlSent(sent, 'step.commit').map((m) => m.step)).toEqual([0, 0]);
    const records: number[] = [];
    a.on('step.committed', (r) => records.push(r.step));
    a.send(committed(0, 0, 0, H(1)));
    a.send(committed(1, 0, 0, H(1)));
    // step 0 committed: step 1 is the head, prepared already, so it commits at once; step 2 goes out
    expect(records).toEqual([0]);
    expect(controlSent(sent, 'step.commit').map((m) => m.step)).toEqual([0, 0, 1, 1]);
    expect(dispatched(sent).slice(4)).toEqual([
      [2, 0, 0],
      [2, 0, 0],
    ]);
    a.send(committed(0, 1, 0, H(2)));
    a.send(committed(1, 1, 0, H(2)));
    expect(records).toEqual([0, 1]);
    expect(dispatched(sent).length).toBe(6); // nothing past the last step
  });

  it('a failure of a step ahead aborts it once it is the head (the head before it commits), and it goes again under a new attempt with every step after it', () => {
    const { a, sent } = start(4, t2);
    a.send(failed(1, 1, 0)); // pod 1 fails step 1 while step 0 is the head
    expect(controlSent(sent, 'step.abort')).toEqual([]);
    a.send(prepared(0, 0, 0, H(1)));
    a.send(prepared(1, 0, 0, H(1)));
    a.send(committed(0, 0, 0, H(1)));
    a.send(committed(1, 0, 0, H(1)));
    expect(a.getSnapshot().context.stepsCommitted).toBe(1);
    // step 1 is the head now, failed: aborted (taking step 2, dispatched with step 0's commit, with it)
    expect((controlSent(sent, 'step.abort') as { step: number; attempt: number }[]).map((m) => [m.step, m.attempt])).toEqual([
      [1, 0],
      [1, 0],
    ]);
    expect(a.getSnapshot().context.ahead).toEqual([]);
    a.send(aborted(0, 1, 0));
    a.send(aborted(1, 1, 0));
    a.send(up(0));
    a.send(up(1));
    // again: step 1 and step 2, attempt 1 (above every attempt used before), step 0 committed
    expect(dispatched(sent).slice(-4)).toEqual([
      [1, 1, 0],
      [1, 1, 0],
      [2, 1, 0],
      [2, 1, 0],
    ]);
    expect(a.getSnapshot().context.retried).toEqual([{ step: 1, attempt: 0, pod: 1, host: 3, cause: exchangeDeadline(1) }]);
    // a report on the old attempt of step 2 is not taken for the new one
    a.send(prepared(0, 2, 0, H(3)));
    expect(a.getSnapshot().context.ahead[0].prepared.size).toBe(0);
  });

  it('a restarted client finds the pods past the logged step, then dispatches above every attempt a pod has seen, two steps at once', () => {
    const records: RunLogRecord[] = [0, 1].map((step) => ({ step, attempt: 0, paramsHash: H(step + 1), loss: 0.5, at: 'then' }));
    const sent: OneWireCommand[] = [];
    const a = createActor(
      clientMachine.provide({
        actors: { wire: recordingWire(sent), runlog: memoryRunLog(records), checkpoints: noCheckpoints(), clock: manualClock().actor },
      }),
      { input: { topology: t2, runId: RUN, incarnation: 'test', now: now(), steps: 5, resume: records[1] } },
    );
    a.start();
    // the old client had steps 2 and 3 in flight, attempt 3: the pods committed the logged step 1
    a.send(up(0, 2, 3, 'running'));
    a.send(up(1, 2, 3, 'prepared'));
    expect(controlSent(sent, 'step.commit')).toEqual([]); // nothing to finish: the pods are past it
    // as before any retry, it waits for every pod's next word that all its hosts are up
    a.send(up(0, 2, 3, 'running'));
    a.send(up(1, 2, 3, 'prepared'));
    const d = dispatched(sent);
    expect(d.map(([step, , committed]) => [step, committed])).toEqual([
      [2, 1],
      [2, 1],
      [3, 1],
      [3, 1],
    ]);
    expect(d[0][1]).toBeGreaterThan(3); // above every attempt a pod has seen (and any an earlier client used)
    expect(new Set(d.map(([, attempt]) => attempt)).size).toBe(1);
    a.stop();
  });
});
