import { describe, expect, it } from 'vitest';
import { createActor, getInitialSnapshot, getNextSnapshot, waitFor, type SnapshotFrom } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { combineShardHashes, parseTopology, preset, subjects, type FailureCause } from '@lockstep/topology';
import { podMachine, systemClock, ticker, totalRejections, type PodEvent, type OneWireCommand } from '../src/index.ts';
import { controlSent, manualClock, now, recordingWire } from './helpers.ts';

const RUN = 'test-run';
const t = parseTopology({ ...preset('tiny'), pods: 2, hostsPerPod: 2 });
const H = (n: number) => n.toString(16).padStart(64, '0');
const machine = podMachine.provide({ actors: { wire: recordingWire([]), clock: manualClock().actor } });
type Snap = SnapshotFrom<typeof podMachine>;

let n = 0;
const env = (step: number, attempt: number, sender: string) => ({ v: 1 as const, runId: RUN, step, attempt, sender, msgId: `m${n++}` });
/** `committed`: what the client says is committed when it dispatches (the step before, one step at a time). */
const fromClient = (kind: 'step.dispatch' | 'step.commit' | 'step.abort', step: number, attempt: number, committed = step - 1): PodEvent =>
  kind === 'step.dispatch'
    ? { type: kind, msg: { ...env(step, attempt, 'client'), kind, samples: { start: 0, end: 32 }, committed }, at: now() }
    : kind === 'step.abort'
      ? { type: kind, msg: { ...env(step, attempt, 'client'), kind, reason: 'test' }, at: now() }
      : { type: kind, msg: { ...env(step, attempt, 'client'), kind }, at: now() };
/** What host h of pod 0 says when the exchange deadline passes with nothing from its peer in pod 1. */
const exchangeDeadline = (h: number): FailureCause => ({
  kind: 'deadline',
  actor: `host/0/${h}`,
  phase: 'exchange',
  ms: 100,
  waitingFor: 'grad.exchange',
  peers: [{ actor: `host/1/${h}` }],
});
const fromHost = (
  kind: 'host.prepared' | 'host.committed' | 'host.aborted' | 'host.failed',
  h: number,
  step: number,
  attempt: number,
): PodEvent => {
  const e = env(step, attempt, `host/0/${h}`);
  switch (kind) {
    case 'host.prepared':
      return { type: kind, msg: { ...e, kind, shardHash: H(h + 1), lossSum: 0.5, phaseMs: { forward: 1 }, waitedMs: 0 }, at: now() };
    case 'host.committed':
      return { type: kind, msg: { ...e, kind, shardHash: H(h + 1) }, at: now() };
    case 'host.aborted':
      return { type: kind, msg: { ...e, kind }, at: now() };
    case 'host.failed':
      return { type: kind, msg: { ...e, kind, cause: exchangeDeadline(h) }, at: now() };
  }
};

/** Events that belong to the attempt in flight: the protocol's moves. */
function protocolEvents(s: Snap): PodEvent[] {
  const { step, attempt } = s.context;
  return [
    fromClient('step.dispatch', step, attempt + 1),
    fromClient('step.commit', step, attempt),
    fromClient('step.abort', step, attempt),
    ...[0, 1].flatMap((h) =>
      (['host.prepared', 'host.committed', 'host.aborted', 'host.failed'] as const).map((k) => fromHost(k, h, step, attempt)),
    ),
  ];
}

/** Events that never belong: stale step, future step, wrong attempt. */
function wrongEvents(s: Snap): PodEvent[] {
  const { step, attempt } = s.context;
  return [
    ...(step > 0 ? [fromClient('step.commit', step - 1, 99), fromHost('host.prepared', 0, step - 1, 0)] : []),
    fromClient('step.commit', step + 1, 0),
    fromHost('host.prepared', 1, step, attempt + 5),
    fromHost('host.committed', 0, step, attempt + 5),
  ];
}

const key = (s: Snap) =>
  JSON.stringify([
    s.value,
    s.context.step,
    s.context.attempt,
    [...s.context.prepared.keys()].sort(),
    [...s.context.committed].sort(),
    [...s.context.aborted].sort(),
  ]);

describe('pod machine', () => {
  const paths = getShortestPaths(machine, {
    input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    events: (s) => protocolEvents(s as Snap),
    serializeState: (s) => key(s as Snap),
    stopWhen: (s) => (s as Snap).context.step >= 2 || (s as Snap).context.attempt >= 2,
  });
  const states = paths.map((p) => p.state as Snap);

  it('the graph walk reaches every phase of the protocol', () => {
    for (const v of ['idle', 'running', 'prepared', 'committing', 'aborting', 'failed'])
      expect(states.some((s) => s.matches(v as never))).toBe(true);
    expect(states.some((s) => s.context.step === 2)).toBe(true);
  });

  it('on every path, a commit is relayed only after every host prepared this attempt', () => {
    let commits = 0;
    for (const p of paths) {
      for (let i = 1; i < p.steps.length; i++) {
        const before = p.steps[i - 1].state as Snap;
        const next = p.steps[i].state as Snap;
        if (next.matches('committing') && !before.matches('committing')) commits++;
        if (next.matches('committing') && !before.matches('committing')) {
          expect(before.matches('prepared')).toBe(true);
          expect(before.context.prepared.size).toBe(t.hostsPerPod);
        }
        if (next.context.step !== before.context.step) {
          expect(next.context.step).toBe(before.context.step + 1);
          expect(before.matches('committing')).toBe(true);
        }
      }
    }
    expect(commits).toBeGreaterThan(0);
  });

  it('in every reachable state, stale, future and wrong-attempt events are rejected and change nothing else', () => {
    let checked = 0;
    for (const s of states) {
      for (const e of wrongEvents(s)) {
        const next = getNextSnapshot(machine, s, e);
        expect(key(next)).toBe(key(s));
        expect(totalRejections(next.context.rejected)).toBe(totalRejections(s.context.rejected) + 1);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('a resent commit of the step just committed is confirmed again, changing nothing', () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromHost('host.prepared', 0, 0, 0));
    a.send(fromHost('host.prepared', 1, 0, 0));
    a.send(fromClient('step.commit', 0, 0));
    a.send(fromHost('host.committed', 0, 0, 0));
    a.send(fromHost('host.committed', 1, 0, 0));
    expect(a.getSnapshot().value).toBe('idle');
    a.send(fromClient('step.commit', 0, 0));
    const confirmations = controlSent(sent, 'pod.committed');
    expect(confirmations.length).toBe(2);
    expect(new Set(confirmations.map((m) => m.msgId)).size).toBe(2); // not taken for a repeat by the client's dedup
    expect(a.getSnapshot().context.step).toBe(1);
    expect(totalRejections(a.getSnapshot().context.rejected)).toBe(0);
  });

  it('a later attempt supersedes the one in flight; an abort of an attempt never seen is confirmed at once', () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.abort', 0, 0)); // the dispatch of attempt 0 was lost
    expect(controlSent(sent, 'pod.aborted')).toMatchObject([{ step: 0, attempt: 0 }]);
    a.send(fromClient('step.dispatch', 0, 0)); // attempt 0 is over: a late dispatch of it is rejected
    expect(a.getSnapshot().value).toBe('idle');
    a.send(fromClient('step.dispatch', 0, 1));
    a.send(fromHost('host.prepared', 0, 0, 1));
    a.send(fromClient('step.dispatch', 0, 2));
    expect(a.getSnapshot().value).toBe('running');
    expect(a.getSnapshot().context.attempt).toBe(2);
    expect(a.getSnapshot().context.prepared.size).toBe(0);
    expect(controlSent(sent, 'host.dispatch').map((m) => m.attempt)).toEqual([1, 1, 2, 2]);
  });

  it('a restarted pod (step -1) confirms an abort, and tells its hosts, under the aborted step, not -1', () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 1, incarnation: 'test', now: now(), rejoin: true },
    }).start();
    expect(a.getSnapshot().context.step).toBe(-1);
    a.send(fromClient('step.abort', 3, 0));
    expect(controlSent(sent, 'pod.aborted')).toMatchObject([{ step: 3, attempt: 0 }]);
    expect(controlSent(sent, 'host.abort').map((m) => m.step)).toEqual([3, 3]);
  });

  it('a host that stops heartbeating while the step runs fails the attempt, named with its last phase', async () => {
    const quick = parseTopology({ ...preset('tiny'), heartbeat: { intervalMs: 20, misses: 3 } });
    const sent: OneWireCommand[] = [];
    // the real clock actor: a tick every heartbeat interval (20 ms), stamped with the system clock
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: ticker(systemClock) } }), {
      input: { topology: quick, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    const beat = (h: number, phase: string): PodEvent => ({
      type: 'host.heartbeat',
      msg: { ...env(0, 0, `host/0/${h}`), kind: 'host.heartbeat', phase },
      at: now(),
    });
    // the loop ends as soon as the pod fails (after 60 ms of silence); the bound only keeps a broken pod from hanging
    const until = Date.now() + 5000;
    a.send(beat(1, 'exchange'));
    while (Date.now() < until && a.getSnapshot().value === 'running') {
      a.send(beat(0, 'reduceScatter')); // host 0 keeps beating, host 1 has gone quiet
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(a.getSnapshot().value).toBe('failed');
    const [failed] = controlSent(sent, 'pod.failed');
    // the pod found it (host -1), and the cause names the silent host and its last phase
    expect(failed).toMatchObject({ host: -1, cause: { kind: 'silent', actor: 'host/0/1', lastPhase: 'exchange' } });
    expect(failed.kind === 'pod.failed' && failed.cause.kind === 'silent' && failed.cause.ms).toBeGreaterThan(60);
    a.stop();
  });

  it('a dispatched host is judged as computing until a heartbeat says otherwise (hosts send none on entering a phase)', () => {
    // heartbeat limit 3 x 20 = 60 ms; a computing host's limit is the phase deadline (500 ms) before any step reported its times
    const quick = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 20, misses: 3 },
      deadlines: { startupMs: 1000, phaseMs: 500, stepMs: 5000 },
    });
    const sent: OneWireCommand[] = [];
    const clock = manualClock();
    const t0 = now();
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: clock.actor } }), {
      input: { topology: quick, runId: RUN, pod: 0, incarnation: 'test', now: t0 },
    }).start();
    a.send({ ...fromClient('step.dispatch', 0, 0), at: t0 });
    const beat = (h: number, phase: string, at: number): PodEvent => ({
      type: 'host.heartbeat',
      msg: { ...env(0, 0, `host/0/${h}`), kind: 'host.heartbeat', phase },
      at,
    });
    a.send(beat(1, 'exchange', t0 + 50)); // host 1 says it waits on tensors; host 0 says nothing (it computes)
    clock.tick(t0 + 100);
    expect(a.getSnapshot().value).toBe('running'); // host 0: 100 ms silent, within a computing host's limit
    clock.tick(t0 + 120);
    expect(a.getSnapshot().value).toBe('failed'); // host 1: 70 ms silent while waiting, past the heartbeat limit
    expect(controlSent(sent, 'pod.failed')).toMatchObject([{ cause: { kind: 'silent', actor: 'host/0/1', lastPhase: 'exchange' } }]);
    a.stop();

    // the same pod without host 1's word: host 0 and host 1 both count as computing until the phase deadline
    const sent2: OneWireCommand[] = [];
    const clock2 = manualClock();
    const b = createActor(podMachine.provide({ actors: { wire: recordingWire(sent2), clock: clock2.actor } }), {
      input: { topology: quick, runId: RUN, pod: 0, incarnation: 'test', now: t0 },
    }).start();
    b.send({ ...fromClient('step.dispatch', 0, 0), at: t0 });
    clock2.tick(t0 + 400);
    expect(b.getSnapshot().value).toBe('running');
    clock2.tick(t0 + 520);
    expect(b.getSnapshot().value).toBe('failed');
    expect(controlSent(sent2, 'pod.failed')).toMatchObject([{ cause: { kind: 'silent', lastPhase: 'forward' } }]);
    b.stop();
  });

  it('the step deadline fails the attempt with a deadline cause naming each host not prepared and its last phase', async () => {
    const quick = parseTopology({ ...preset('tiny'), deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 60 } });
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: quick, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send({ type: 'host.heartbeat', msg: { ...env(0, 0, 'host/0/1'), kind: 'host.heartbeat', phase: 'allGather' }, at: now() });
    a.send(fromHost('host.prepared', 0, 0, 0));
    await waitFor(a, (s) => s.value === 'failed', { timeout: 2000 });
    expect(controlSent(sent, 'pod.failed')).toMatchObject([
      {
        host: -1,
        cause: {
          kind: 'deadline',
          actor: 'pod/0',
          phase: 'running',
          ms: 60,
          waitingFor: 'host.prepared',
          peers: [{ actor: 'host/0/1', lastPhase: 'allGather' }],
        },
      },
    ]);
    a.stop();
  });

  it('a commit a host never confirms fails with commitNotConfirmed naming that host', async () => {
    const quick = parseTopology({ ...preset('tiny'), deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 60 } });
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: quick, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromHost('host.prepared', 0, 0, 0));
    a.send(fromHost('host.prepared', 1, 0, 0));
    a.send(fromClient('step.commit', 0, 0));
    a.send(fromHost('host.committed', 0, 0, 0));
    await waitFor(a, (s) => s.value === 'failed', { timeout: 2000 });
    expect(controlSent(sent, 'pod.failed')).toMatchObject([
      { host: -1, cause: { kind: 'commitNotConfirmed', actor: 'pod/0', ms: 60, peers: [{ actor: 'host/0/1', lastPhase: 'prepared' }] } },
    ]);
    a.stop();
  });

  it('says on each tick, with the time the tick carries, whether every host has been heard from; and at once when the last one comes up', () => {
    const sent: OneWireCommand[] = [];
    const clock = manualClock();
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: clock.actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: 10_000 },
    }).start();
    const limit = t.heartbeat.intervalMs * t.heartbeat.misses;
    const beat = (host: string, at: number, phase = 'idle') =>
      a.send({ type: 'host.heartbeat', msg: { ...env(0, 0, host), kind: 'host.heartbeat', phase }, at });
    beat('host/0/0', 10_000);
    clock.tick(10_000 + limit); // host 0 heard just within the limit; host 1 never heard from
    beat('host/0/1', 10_000 + limit, 'joining');
    clock.tick(10_000 + limit + 1); // host 0 silent past the limit; host 1 heard, but still joining
    beat('host/0/0', 10_000 + limit + 2);
    expect(controlSent(sent, 'pod.heartbeat').length).toBe(2); // host 1 still joining
    beat('host/0/1', 10_000 + limit + 2); // the last host comes up: ready, said at once
    clock.tick(10_000 + limit + 3);
    const beats = controlSent(sent, 'pod.heartbeat') as { phase: string; ready: boolean; silentHosts: number[]; msgId: string }[];
    expect(beats.map((b) => [b.phase, b.ready, b.silentHosts])).toEqual([
      ['idle', false, [1]],
      ['idle', false, [0, 1]],
      ['idle', true, []],
      ['idle', true, []],
    ]);
    expect(new Set(beats.map((b) => b.msgId)).size).toBe(4);
    expect(a.getSnapshot().context.now).toBe(10_000 + limit + 3);
    a.stop();
  });

  it('each heartbeat of a host that says it heals is passed on to host h of every other pod (heal.expect), in any phase, each under a new id', () => {
    const t3 = parseTopology({ ...preset('tiny'), pods: 3, training: { ...preset('tiny').training, globalBatch: 60 } });
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t3, runId: RUN, pod: 1, incarnation: 'test', now: now() },
    }).start();
    const beat = (h: number, phase: string): PodEvent => ({
      type: 'host.heartbeat',
      msg: { ...env(0, 0, `host/1/${h}`), kind: 'host.heartbeat', phase },
      at: now(),
    });
    const said = () => sent.flatMap((c) => (c.type === 'wire.send' && c.message.kind === 'heal.expect' ? [c.subject] : []));
    a.send(beat(0, 'idle'));
    expect(said()).toEqual([]);
    a.send(beat(1, 'healing')); // host 1 restarted: host 1 of pods 0 and 2 hold its replica
    expect(said()).toEqual([subjects.hostExpect(RUN, 0, 1, 1), subjects.hostExpect(RUN, 2, 1, 1)]);
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(beat(1, 'healing')); // again on its next heartbeat, also while a step runs (which it fails)
    expect(a.getSnapshot().value).toBe('failed');
    expect(said()).toHaveLength(4);
    a.send(beat(1, 'idle')); // healed: nothing more
    expect(said()).toHaveLength(4);
    const ids = controlSent(sent, 'heal.expect').map((m) => m.msgId);
    expect(new Set(ids).size).toBe(4);
    expect(controlSent(sent, 'heal.expect').every((m) => m.sender === 'pod/1')).toBe(true);
    a.stop();
  });

  it('a repeated host.prepared counts once', () => {
    let s = getInitialSnapshot(machine, { topology: t, runId: RUN, pod: 0, incarnation: 'test' });
    s = getNextSnapshot(machine, s, fromClient('step.dispatch', 0, 0));
    const p = fromHost('host.prepared', 0, 0, 0);
    s = getNextSnapshot(machine, s, p);
    s = getNextSnapshot(machine, s, p);
    expect(s.context.prepared.size).toBe(1);
    expect(s.value).toBe('running');
  });

  it('gang-schedules its hosts and reports the pod hash over shard hashes in host order', () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    const dispatched = controlSent(sent, 'host.dispatch') as { samples: { start: number; end: number } }[];
    expect(dispatched.map((d) => d.samples)).toEqual([
      { start: 0, end: 16 },
      { start: 16, end: 32 },
    ]);
    a.send(fromHost('host.prepared', 1, 0, 0));
    a.send(fromHost('host.prepared', 0, 0, 0));
    const [prepared] = controlSent(sent, 'pod.prepared') as { paramsHash: string; lossSum: number }[];
    expect(prepared.paramsHash).toBe(combineShardHashes([H(1), H(2)]));
    expect(prepared.lossSum).toBe(1);
  });

  it("a host's failure is relayed to the client with its cause unchanged and the host's index", () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromHost('host.failed', 1, 0, 0));
    expect(controlSent(sent, 'pod.failed')).toMatchObject([{ host: 1, cause: exchangeDeadline(1) }]);
    expect(a.getSnapshot().context.failure).toEqual({ host: 1, cause: exchangeDeadline(1) });
    a.send(fromClient('step.abort', 0, 0));
    expect(controlSent(sent, 'host.abort').length).toBe(2);
  });
});

describe('pod machine, steps in flight (dispatch.depth 2)', () => {
  const pod = () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now() },
    }).start();
    return { a, sent };
  };
  const dispatches = (sent: OneWireCommand[]) =>
    (controlSent(sent, 'host.dispatch') as { step: number; attempt: number; committed: number }[]).map((m) => [
      m.step,
      m.attempt,
      m.committed,
    ]);

  it('relays a dispatch of the step after its head to its hosts at once, keeps their reports, and makes it the head once the head commits', () => {
    expect(t.dispatch.depth).toBe(2);
    const { a, sent } = pod();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromClient('step.dispatch', 1, 0, -1));
    // both steps go to both hosts at once, in the order the pod took them: the hosts queue step 1 behind step 0
    expect(dispatches(sent)).toEqual([
      [0, 0, -1],
      [0, 0, -1],
      [1, 0, -1],
      [1, 0, -1],
    ]);
    expect(a.getSnapshot().value).toBe('running');
    expect(a.getSnapshot().context.ahead.map((x) => x.step)).toEqual([1]);
    // a step past what the client keeps in flight is refused
    a.send(fromClient('step.dispatch', 2, 0, -1));
    expect(dispatches(sent).length).toBe(4);
    // the hosts prepare step 0, then step 1 on it; step 1's reports wait
    for (const h of [0, 1]) a.send(fromHost('host.prepared', h, 0, 0));
    for (const h of [0, 1]) a.send(fromHost('host.prepared', h, 1, 0));
    expect(controlSent(sent, 'pod.prepared').map((m) => m.step)).toEqual([0]);
    a.send(fromClient('step.commit', 0, 0));
    for (const h of [0, 1]) a.send(fromHost('host.committed', h, 0, 0));
    // step 0 committed: step 1 is the head, prepared by every host already, so reported at once
    expect(controlSent(sent, 'pod.committed').map((m) => m.step)).toEqual([0]);
    expect(controlSent(sent, 'pod.prepared').map((m) => m.step)).toEqual([0, 1]);
    expect(a.getSnapshot().value).toMatchObject({ prepared: 'reported' });
    expect(a.getSnapshot().context).toMatchObject({ step: 1, attempt: 0, ahead: [] });
    // the next dispatch says step 0 is committed (the client's word, or the pod's own, whichever is further)
    a.send(fromClient('step.dispatch', 2, 0, 0));
    expect(dispatches(sent).slice(4)).toEqual([
      [2, 0, 0],
      [2, 0, 0],
    ]);
    expect(totalRejections(a.getSnapshot().context.rejected)).toBe(1);
  });

  it("a host's failure of a step ahead is said once that step is the head; an abort of the head drops the steps ahead of it", () => {
    const { a, sent } = pod();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromClient('step.dispatch', 1, 0));
    a.send(fromHost('host.failed', 1, 1, 0)); // host 1 prepared step 0, then failed step 1
    expect(controlSent(sent, 'pod.failed')).toEqual([]);
    for (const h of [0, 1]) a.send(fromHost('host.prepared', h, 0, 0));
    a.send(fromClient('step.commit', 0, 0));
    for (const h of [0, 1]) a.send(fromHost('host.committed', h, 0, 0));
    expect(a.getSnapshot().value).toBe('failed');
    expect(controlSent(sent, 'pod.failed')).toMatchObject([{ step: 1, attempt: 0, host: 1, cause: exchangeDeadline(1) }]);
    // the client aborts step 1; and, another time, an abort of the head takes a step ahead with it
    a.send(fromClient('step.abort', 1, 0));
    for (const h of [0, 1]) a.send(fromHost('host.aborted', h, 1, 0));
    expect(a.getSnapshot().value).toBe('idle');
    a.send(fromClient('step.dispatch', 1, 1));
    a.send(fromClient('step.dispatch', 2, 1));
    expect(a.getSnapshot().context.ahead.map((x) => [x.step, x.attempt])).toEqual([[2, 1]]);
    a.send(fromClient('step.abort', 1, 1));
    expect(a.getSnapshot().context.ahead).toEqual([]);
    expect((controlSent(sent, 'host.abort') as { step: number; attempt: number }[]).slice(-2).map((m) => [m.step, m.attempt])).toEqual([
      [1, 1],
      [1, 1],
    ]);
  });

  it('a newer attempt of the head drops older steps ahead of it; one of a later step, the older one of that step', () => {
    const { a } = pod();
    a.send(fromClient('step.dispatch', 0, 0));
    a.send(fromClient('step.dispatch', 1, 0));
    a.send(fromClient('step.dispatch', 0, 1)); // a retry of step 0 (its abort lost): step 1 of attempt 0 built on the old one
    expect(a.getSnapshot().context).toMatchObject({ step: 0, attempt: 1, ahead: [] });
    a.send(fromClient('step.dispatch', 1, 0)); // a late leftover: older than the head
    expect(a.getSnapshot().context.ahead).toEqual([]);
    a.send(fromClient('step.dispatch', 1, 1));
    a.send(fromClient('step.dispatch', 1, 2));
    expect(a.getSnapshot().context.ahead.map((x) => [x.step, x.attempt])).toEqual([[1, 2]]);
  });

  it('restarted while the client commits, it learns step 0 from the resent commit, then takes the commit of step 1, which its former life prepared; a pod that never restarted refuses that', () => {
    for (const rejoin of [true, false]) {
      const sent: OneWireCommand[] = [];
      const a = createActor(podMachine.provide({ actors: { wire: recordingWire(sent), clock: manualClock().actor } }), {
        input: { topology: t, runId: RUN, pod: 0, incarnation: 'test', now: now(), rejoin },
      }).start();
      if (rejoin) {
        a.send(fromClient('step.commit', 0, 0));
        for (const h of [0, 1]) a.send(fromHost('host.committed', h, 0, 0));
      } else {
        a.send(fromClient('step.dispatch', 0, 0, -1));
        for (const h of [0, 1]) a.send(fromHost('host.prepared', h, 0, 0));
        a.send(fromClient('step.commit', 0, 0));
        for (const h of [0, 1]) a.send(fromHost('host.committed', h, 0, 0));
      }
      expect(a.getSnapshot().value).toBe('idle');
      expect(a.getSnapshot().context.step).toBe(1);
      a.send(fromClient('step.commit', 1, 0)); // logged from the pods' reports: this pod's came from its former life
      expect(a.getSnapshot().matches(rejoin ? 'committing' : 'idle')).toBe(true);
      expect(controlSent(sent, 'host.commit').filter((m) => m.step === 1).length).toBe(rejoin ? 2 : 0);
    }
  });
});
