import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor, type Actor, type SnapshotFrom } from 'xstate';
import {
  ReferenceTrainer,
  combineShardHashes,
  parseTopology,
  preset,
  shardHash,
  subjects,
  type Activations,
  type StateDone,
  type Topology,
} from '@lockstep/topology';
import {
  answerGapMs,
  computeFor,
  crashInspector,
  expectWindowMs,
  hostMachine,
  type BackwardInput,
  type ForwardInput,
  type HostEvent,
  type Timed,
  type OneWireCommand,
  type WireCommand,
} from '../src/index.ts';
import { controlSent, hostActors, joined, manualClock, now, recordingWire } from './helpers.ts';

const RUN = 'test-run';

function topo(over: Partial<Topology> = {}): Topology {
  return parseTopology({ ...preset('tiny'), ...over });
}

/** `committed`: the last step the pod says is committed (the step before, one step at a time). */
function dispatch(pod: number, step: number, attempt: number, samples: { start: number; end: number }, committed = step - 1): HostEvent {
  return {
    type: 'host.dispatch',
    msg: {
      v: 1,
      runId: RUN,
      step,
      attempt,
      sender: `pod/${pod}`,
      msgId: `d/${pod}/${step}/${attempt}/${Math.random()}`,
      kind: 'host.dispatch',
      samples,
      committed,
    },
    at: now(),
  };
}
function commit(pod: number, step: number, attempt: number): HostEvent {
  return {
    type: 'host.commit',
    msg: { v: 1, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `c/${step}/${Math.random()}`, kind: 'host.commit' },
    at: now(),
  };
}
function abort(pod: number, step: number, attempt: number): HostEvent {
  return {
    type: 'host.abort',
    msg: { v: 1, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `a/${step}/${Math.random()}`, kind: 'host.abort', reason: 'test' },
    at: now(),
  };
}

/** Pod `healing` says its host of this host's index heals (heal.expect). */
function healExpect(healing: number, at: number): HostEvent {
  const msgId = `x/${healing}/${Math.random()}`;
  return { type: 'heal.expect', msg: { v: 1, runId: RUN, step: 0, attempt: 0, sender: `pod/${healing}`, msgId, kind: 'heal.expect' }, at };
}
/** A state request from `sender` (a healing host h of another pod), request round `round`. */
function stateRequest(sender: string, round: number, at: number): HostEvent {
  const msgId = `sr/${sender}/${round}/${Math.random()}`;
  return {
    type: 'state.request',
    msg: { v: 1, runId: RUN, step: 0, attempt: round, sender, msgId, kind: 'state.request', reqId: `r${round}` },
    at,
  };
}

type HostActor = Actor<typeof hostMachine>;

/** A host prepared a step: it awaits its commit (`pending`), with nothing else to compute here (idle at the next step). */
const holdsPrepared = (s: SnapshotFrom<typeof hostMachine>) => s.context.pending.length > 0 && s.matches('idle');

/**
 * Every host of a topology as pure machines in one process, their tensor sends
 * (and tensor requests) routed straight to each other; `lose` drops the sends
 * it picks, as a lossy network would.
 */
function cluster(t: Topology, lose: (cmd: OneWireCommand) => boolean = () => false) {
  const sent = new Map<string, OneWireCommand[]>();
  const hosts = new Map<string, HostActor>();
  for (let p = 0; p < t.pods; p++) {
    for (let h = 0; h < t.hostsPerPod; h++) {
      const log: OneWireCommand[] = [];
      sent.set(`${p}/${h}`, log);
      const wire = recordingWire(log, (cmd) => {
        const [, , , tp, th, kind] = cmd.subject.split('.');
        if (kind !== 'data' || lose(cmd)) return;
        const to = hosts.get(`${tp}/${th}`)!;
        if (cmd.type === 'wire.send') {
          const m = cmd.message;
          if (m.kind === 'tensor.request') queueMicrotask(() => to.send({ type: 'tensor.request', msg: m, at: now() }));
          return;
        }
        const data = Float32Array.from(cmd.data);
        queueMicrotask(() => to.send({ type: 'tensor.received', tensor: { ...cmd.head, data }, at: now() }));
      });
      const a = createActor(hostMachine.provide({ actors: hostActors(wire) }), {
        input: { topology: t, runId: RUN, pod: p, host: h, incarnation: 'test', now: now() },
      });
      a.subscribe({ error: (e) => console.error(e) });
      hosts.set(`${p}/${h}`, joined(a.start()));
    }
  }
  return { hosts, sent };
}

describe('host machine', () => {
  it('two pods of hosts wired together reach the reference bits at every step', async () => {
    const t = topo();
    const { hosts, sent } = cluster(t);
    const ref = new ReferenceTrainer(t);
    const per = t.training.globalBatch / (t.pods * t.hostsPerPod);
    for (let step = 0; step < 4; step++) {
      for (const [key, a] of hosts) {
        const [p, h] = key.split('/').map(Number);
        const start = (p * t.hostsPerPod + h) * per;
        a.send(dispatch(p, step, 0, { start, end: start + per }));
      }
      await Promise.all([...hosts.values()].map((a) => waitFor(a, holdsPrepared, { timeout: 5000 })));
      const expected = ref.runStep().paramsHash;
      for (let p = 0; p < t.pods; p++) {
        const shardHashes = Array.from(
          { length: t.hostsPerPod },
          (_, h) => controlSent(sent.get(`${p}/${h}`)!, 'host.prepared').at(-1)!,
        ).map((m) => (m as { shardHash: string }).shardHash);
        expect(combineShardHashes(shardHashes)).toBe(expected);
      }
      for (const [key, a] of hosts) a.send(commit(Number(key.split('/')[0]), step, 0));
      for (const a of hosts.values()) expect(a.getSnapshot().value).toBe('idle');
    }
    // every host timed every phase of every step, and reported it with prepared
    const prepared = controlSent(sent.get('1/1')!, 'host.prepared') as { phaseMs: Record<string, number> }[];
    expect(prepared.length).toBe(4);
    for (const p of prepared)
      expect(Object.keys(p.phaseMs).sort()).toEqual(['allGather', 'backward', 'exchange', 'forward', 'reduceScatter', 'update']);
  });

  it('a tensor lost on the way is asked for again and the step prepares without a retry, to the reference bits', async () => {
    const t = parseTopology({
      ...preset('tiny'),
      heartbeat: { intervalMs: 20, misses: 3 },
      deadlines: { startupMs: 5000, phaseMs: 2000, stepMs: 5000 },
    });
    const lost: string[] = [];
    // the first send of each tensor kind from host/1/0 is lost: a slice to host/1/1, the exchange to host/0/0, the shard to host/1/1
    const { hosts, sent } = cluster(t, (cmd) => {
      if (cmd.type !== 'wire.sendTensor' || cmd.head.sender !== 'host/1/0' || cmd.head.msgId.includes('.x')) return false;
      lost.push(cmd.head.tensor);
      return true;
    });
    const per = t.training.globalBatch / (t.pods * t.hostsPerPod);
    for (const [key, a] of hosts) {
      const [p, h] = key.split('/').map(Number);
      const start = (p * t.hostsPerPod + h) * per;
      a.send(dispatch(p, 0, 0, { start, end: start + per }));
    }
    await Promise.all([...hosts.values()].map((a) => waitFor(a, holdsPrepared, { timeout: 5000 })));
    expect(lost.sort()).toEqual(['grad.exchange', 'grad.slice', 'param.shard']);
    const expected = new ReferenceTrainer(t).runStep().paramsHash;
    for (let p = 0; p < t.pods; p++) {
      const shardHashes = Array.from(
        { length: t.hostsPerPod },
        (_, h) => (controlSent(sent.get(`${p}/${h}`)!, 'host.prepared').at(-1) as { shardHash: string }).shardHash,
      );
      expect(combineShardHashes(shardHashes)).toBe(expected);
    }
    // the hosts that missed a tensor asked host/1/0 for it, and it sent it again under new ids
    const asked = (key: string) => (controlSent(sent.get(key)!, 'tensor.request') as { tensor: string }[]).map((m) => m.tensor);
    expect(asked('0/0')).toContain('grad.exchange');
    expect(asked('1/1')).toEqual(expect.arrayContaining(['grad.slice', 'param.shard']));
    const again = sent.get('1/0')!.filter((c) => c.type === 'wire.sendTensor' && c.head.msgId.includes('.x')) as Extract<
      WireCommand,
      { type: 'wire.sendTensor' }
    >[];
    expect(again.map((c) => c.head.tensor).sort()).toEqual(expect.arrayContaining(['grad.exchange', 'grad.slice', 'param.shard']));
    for (const a of hosts.values())
      expect(controlSent(sent.get(`${a.getSnapshot().context.pod}/${a.getSnapshot().context.host}`)!, 'host.failed')).toEqual([]);
    for (const a of hosts.values()) a.stop();
  });

  it('a request for a tensor this host has not made yet is not answered (it sends it when it gets there)', () => {
    const t = topo({ pods: 1 } as Partial<Topology>);
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    const request = (attempt: number): HostEvent => ({
      type: 'tensor.request',
      msg: {
        v: 1,
        runId: RUN,
        step: 0,
        attempt,
        sender: 'host/0/1',
        msgId: `r/${attempt}/${Math.random()}`,
        kind: 'tensor.request',
        tensor: 'param.shard',
        round: 1,
      },
      at: now(),
    });
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    a.send(request(0)); // still computing: no shard yet
    a.send(request(3)); // another attempt: rejected
    expect(sent.filter((c) => c.type === 'wire.sendTensor' && c.head.tensor === 'param.shard')).toEqual([]);
    expect(a.getSnapshot().context.rejected).toMatchObject({ 'wrong attempt': 1 });
    a.stop();
  });

  it('a crash point fires on a phase entered and left within one event (no peers to wait for)', async () => {
    const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
    const fired: string[] = [];
    const quiet = { warn: () => {} } as never;
    const inspect = crashInspector({ host: 0, step: 1, phase: 'exchange', signal: 'SIGKILL' }, quiet, (sig) => fired.push(sig));
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire([])) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
        inspect,
      }).start(),
    );
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    expect(fired).toEqual([]); // step 0 is not the point
    a.send(commit(0, 0, 0));
    a.send(dispatch(0, 1, 0, { start: 0, end: 64 }));
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    expect(fired).toEqual(['SIGKILL']); // exchange was never a settled snapshot, yet it fired, once
    a.stop();
  });

  it('rejects wrong-order, stale, wrong-attempt and repeated events and leaves its state unchanged', async () => {
    const t = topo({ pods: 1 } as Partial<Topology>);
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    const snapshotOf = () => ({
      value: a.getSnapshot().value,
      step: a.getSnapshot().context.step,
      attempt: a.getSnapshot().context.attempt,
    });

    a.send(commit(0, 0, 0)); // commit before any dispatch
    expect(snapshotOf()).toEqual({ value: 'idle', step: 0, attempt: -1 });
    a.send(dispatch(0, t.dispatch.depth, 0, { start: 0, end: 16 })); // a step past what the client keeps in flight
    expect(snapshotOf()).toEqual({ value: 'idle', step: 0, attempt: -1 });

    const d = dispatch(0, 0, 0, { start: 0, end: 16 });
    a.send(d);
    await waitFor(a, (s) => s.matches({ attempt: 'reduceScatter' }), { timeout: 5000 }); // waits for host/0/1's slice
    const before = snapshotOf();
    a.send(d); // the same dispatch again
    a.send(commit(0, 0, 0)); // commit in reduceScatter: out of order
    a.send({
      type: 'tensor.received',
      tensor: { step: 0, attempt: 1, sender: 'host/0/1', tensor: 'grad.slice', shard: 0, data: new Float32Array(1316) },
      at: now(),
    });
    expect(snapshotOf()).toEqual(before);
    expect(a.getSnapshot().context.rejected).toEqual({ 'future step': 1, 'wrong attempt': 1, 'not expected in reduceScatter': 2 });
    expect(a.getSnapshot().context.early.length).toBe(1); // a peer's tensor for attempt 1 is kept, not applied

    // the right slice arrives once, then again: the repeat is a duplicate, not a second contribution
    const slice = { step: 0, attempt: 0, sender: 'host/0/1', tensor: 'grad.slice' as const, shard: 0, data: new Float32Array(1316) };
    a.send({ type: 'tensor.received', tensor: slice, at: now() });
    await waitFor(a, (s) => s.matches({ attempt: 'allGather' }), { timeout: 5000 });
    a.send({ type: 'tensor.received', tensor: slice, at: now() });
    expect(a.getSnapshot().context.duplicates).toBe(1);
    expect(a.getSnapshot().context.slices.size).toBe(1);
  });

  it('holds tensors that arrive before their dispatch, and uses them', async () => {
    const t = topo({ pods: 1 } as Partial<Topology>);
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    a.send({
      type: 'tensor.received',
      tensor: { step: 0, attempt: 0, sender: 'host/0/1', tensor: 'grad.slice', shard: 0, data: new Float32Array(1316) },
      at: now(),
    });
    expect(a.getSnapshot().context.early.length).toBe(1);
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    await waitFor(a, (s) => s.matches({ attempt: 'allGather' }), { timeout: 5000 });
    expect(a.getSnapshot().context.slices.has(1)).toBe(true);
  });

  it('a computation that throws fails the attempt with a computeError cause naming the phase and the error', async () => {
    const sent: OneWireCommand[] = [];
    const a = createActor(
      hostMachine.provide({
        actors: {
          ...hostActors(recordingWire(sent)),
          backwardPass: fromPromise<Timed<Float32Array>, BackwardInput>(async () => {
            throw new Error('NaN in the gradient');
          }),
        },
      }),
      { input: { topology: preset('tiny'), runId: RUN, pod: 1, host: 0, incarnation: 'test', now: now() } },
    );
    joined(a.start());
    a.send(dispatch(1, 0, 0, { start: 0, end: 16 }));
    await waitFor(a, (s) => s.matches({ attempt: 'failed' }), { timeout: 5000 });
    expect(controlSent(sent, 'host.failed')).toMatchObject([
      { cause: { kind: 'computeError', actor: 'host/1/0', phase: 'backward', message: 'NaN in the gradient' } },
    ]);
    a.stop();
  });

  describe('two copies of a tensor that differ (tensor.conflict from its edge)', () => {
    const conflict = (step: number, attempt: number, tensor: 'grad.slice' | 'param.shard' = 'grad.slice'): HostEvent => ({
      type: 'tensor.conflict',
      conflict: { sender: 'host/1/1', step, attempt, tensor, shard: 0, chunk: 2, element: 2100, found: 'complete' },
      at: now(),
    });
    const host = (t: Topology, pod = 1, h = 0) => {
      const sent: OneWireCommand[] = [];
      const a = joined(
        createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
          input: { topology: t, runId: RUN, pod, host: h, incarnation: 'test', now: now() },
        }).start(),
      );
      return { a, sent };
    };

    it('of the attempt in flight fail it, counted, with a tensorConflict cause naming the sender, tensor, shard and chunk', async () => {
      const { a, sent } = host(topo());
      a.send(dispatch(1, 0, 0, { start: 0, end: 16 }));
      a.send(conflict(0, 1)); // of a later attempt: counted (nothing held for it), the attempt in flight goes on
      expect(a.getSnapshot().matches({ attempt: 'forward' })).toBe(true);
      a.send(conflict(0, 0)); // still computing forward: the copies came early, it fails all the same
      await waitFor(a, (s) => s.matches({ attempt: 'failed' }), { timeout: 5000 });
      expect(controlSent(sent, 'host.failed')).toMatchObject([
        {
          step: 0,
          attempt: 0,
          cause: { kind: 'tensorConflict', actor: 'host/1/0', sender: 'host/1/1', tensor: 'grad.slice', shard: 0, chunk: 2 },
        },
      ]);
      a.send(conflict(0, 0)); // a later chunk of the same tensor: counted again, failed once
      expect(controlSent(sent, 'host.failed').length).toBe(1);
      expect(a.getSnapshot().context.rejected).toEqual({ 'tensor conflict': 3 });
      a.send(abort(1, 0, 0));
      expect(a.getSnapshot().value).toBe('idle');
      a.stop();
    });

    it('of another step are only counted; of the next attempt, the copy held for it is let go', () => {
      const t = topo({ pods: 1 } as Partial<Topology>);
      const { a } = host(t, 0, 0);
      a.send({
        type: 'tensor.received',
        tensor: { step: 0, attempt: 0, sender: 'host/1/1', tensor: 'grad.slice', shard: 0, data: new Float32Array(1316) },
        at: now(),
      });
      expect(a.getSnapshot().context.early.length).toBe(1);
      a.send(conflict(0, 0));
      expect(a.getSnapshot().context.early).toEqual([]);
      expect(a.getSnapshot().value).toBe('idle');
      a.send(conflict(5, 0)); // another step: only counted
      expect(a.getSnapshot().value).toBe('idle');
      expect(a.getSnapshot().context.rejected).toEqual({ 'tensor conflict': 2 });
      a.stop();
    });

    it('once prepared (the pod may have reported the step) are only counted: the commit still goes through', async () => {
      const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
      const { a, sent } = host(t, 0, 0);
      a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
      await waitFor(a, holdsPrepared, { timeout: 5000 });
      a.send(conflict(0, 0, 'param.shard'));
      expect(holdsPrepared(a.getSnapshot())).toBe(true);
      expect(a.getSnapshot().context.rejected).toEqual({ 'tensor conflict': 1 });
      a.send(commit(0, 0, 0));
      expect(a.getSnapshot().value).toBe('idle');
      expect(controlSent(sent, 'host.committed').length).toBe(1);
      expect(controlSent(sent, 'host.failed')).toEqual([]);
      a.stop();
    });
  });

  it('a missed deadline fails the attempt with a typed deadline cause naming the missing peer; abort keeps the committed parameters', async () => {
    const t = parseTopology({ ...preset('tiny'), deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 1000 } });
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    const before = shardHash(a.getSnapshot().context.params);
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    await waitFor(a, (s) => s.matches({ attempt: 'failed' }), { timeout: 5000 });
    const [failed] = controlSent(sent, 'host.failed');
    expect(failed).toMatchObject({
      kind: 'host.failed',
      cause: {
        kind: 'deadline',
        actor: 'host/0/0',
        phase: 'reduceScatter',
        ms: 100,
        waitingFor: 'grad.slice',
        peers: [{ actor: 'host/0/1' }],
      },
    });
    a.send(abort(0, 0, 0));
    expect(a.getSnapshot().value).toBe('idle');
    expect(controlSent(sent, 'host.aborted').length).toBe(1);
    expect(shardHash(a.getSnapshot().context.params)).toBe(before);
    // the retry is attempt 1 of the same step; attempt 0 is stale now
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    expect(a.getSnapshot().value).toBe('idle');
    a.send(dispatch(0, 0, 1, { start: 0, end: 16 }));
    expect(a.getSnapshot().matches('attempt')).toBe(true);
  });

  it('a resent commit of the last step is confirmed again; a later dispatch supersedes the attempt in flight', async () => {
    const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    a.send(commit(0, 0, 0));
    const hash = shardHash(a.getSnapshot().context.params);
    a.send(commit(0, 0, 0));
    const confirmations = controlSent(sent, 'host.committed') as { step: number; shardHash: string }[];
    expect(confirmations.map((m) => [m.step, m.shardHash])).toEqual([
      [0, hash],
      [0, hash],
    ]);
    a.send(dispatch(0, 1, 0, { start: 0, end: 64 }));
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    a.send(dispatch(0, 1, 1, { start: 0, end: 64 })); // attempt 1 supersedes attempt 0 even when prepared
    expect(a.getSnapshot().context.attempt).toBe(1);
    expect(shardHash(a.getSnapshot().context.params)).toBe(hash); // committed parameters untouched
  });

  it('repeats its prepared report on each heartbeat tick an interval after it until the pod answers, each under a new id', async () => {
    const t = parseTopology({ ...preset('tiny'), pods: 1, hostsPerPod: 1, heartbeat: { intervalMs: 20, misses: 3 } });
    const sent: OneWireCommand[] = [];
    const clock = manualClock();
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent), { clock: clock.actor }) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    const at = a.getSnapshot().context.pending[0].at;
    clock.tick(at + 5); // less than an interval after it was prepared: not yet
    expect(controlSent(sent, 'host.prepared').length).toBe(1);
    clock.tick(at + 20);
    clock.tick(at + 40);
    const reports = controlSent(sent, 'host.prepared');
    expect(reports.length).toBe(3);
    expect(new Set(reports.map((m) => m.msgId)).size).toBe(reports.length);
    expect(new Set(reports.map((m) => (m as { shardHash: string }).shardHash)).size).toBe(1);
    a.send(commit(0, 0, 0));
    clock.tick(at + 60);
    expect(controlSent(sent, 'host.prepared').length).toBe(3); // answered: no more repeats
    a.stop();
  });

  it("a prepared step's commit is overdue stepMs after the commit before it came, not after it was prepared (its wait behind that one is not its own)", async () => {
    const t = parseTopology({
      ...preset('tiny'),
      pods: 1,
      hostsPerPod: 1,
      dispatch: { depth: 2 },
      heartbeat: { intervalMs: 20, misses: 3 },
      deadlines: { startupMs: 1000, phaseMs: 1000, stepMs: 1000 },
    });
    const sent: OneWireCommand[] = [];
    const clock = manualClock();
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent), { clock: clock.actor }) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
      }).start(),
    );
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    a.send(dispatch(0, 1, 0, { start: 64, end: 128 }));
    await waitFor(a, (s) => s.context.pending.length === 2 && s.matches('idle'), { timeout: 5000 });
    const prepared = a.getSnapshot().context.pending[1].at;
    // step 0's commit comes late (900 ms after step 1 was prepared): step 1's commit is due from then
    const commit0 = { ...commit(0, 0, 0), at: prepared + 900 } as HostEvent;
    a.send(commit0);
    expect(a.getSnapshot().context.pending.map((p) => [p.step, p.waitingSince])).toEqual([[1, prepared + 900]]);
    clock.tick(prepared + 1500); // 1.5 s after step 1 was prepared, 0.6 s after its commit became due: not overdue
    expect(controlSent(sent, 'host.failed')).toEqual([]);
    clock.tick(prepared + 1950); // 1.05 s after it became due: overdue, the step fails
    expect(controlSent(sent, 'host.failed')).toMatchObject([{ step: 1, cause: { kind: 'deadline', phase: 'prepared' } }]);
    a.stop();
  });

  it('sends a heartbeat with its phase on each tick, on joining and on entering forward, to its pod, each under a new id', async () => {
    const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
    const sent: OneWireCommand[] = [];
    const clock = manualClock();
    // the forward pass waits for the test, so ticks come while the host is in forward
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const forwardPass = fromPromise<Timed<Activations>, ForwardInput>(async ({ input }) => {
      await held;
      return { value: computeFor.forwardPass(input), at: now() };
    });
    const a = createActor(hostMachine.provide({ actors: { ...hostActors(recordingWire(sent), { clock: clock.actor }), forwardPass } }), {
      input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: 1000 },
    });
    a.subscribe({ error: (e) => console.error(e) });
    joined(a.start());
    const beats = () => controlSent(sent, 'host.heartbeat') as { phase: string; step: number; msgId: string }[];
    // on start, before its cross-pod peer answered; and once it has, ready for a step
    expect(beats().map((b) => b.phase)).toEqual(['joining', 'idle']);
    clock.tick(1100);
    expect(beats().map((b) => b.phase)).toEqual(['joining', 'idle', 'idle']);
    expect(a.getSnapshot().context.now).toBe(1100); // the time a tick carries is the host's time
    a.send({ ...dispatch(0, 0, 0, { start: 0, end: 64 }), at: 1150 });
    // none on entering a phase (the pod judges a dispatched host as computing); each tick says the phase
    expect(beats().map((b) => b.phase)).toEqual(['joining', 'idle', 'idle']);
    clock.tick(1200);
    clock.tick(1300);
    expect(beats().map((b) => b.phase)).toEqual(['joining', 'idle', 'idle', 'forward', 'forward']);
    release();
    await waitFor(a, holdsPrepared, { timeout: 5000 });
    expect(beats().map((b) => b.phase)).not.toContain('update'); // no tick fell in update, and entering it says nothing
    clock.tick();
    // prepared, it awaits the commit with nothing to compute: idle at the next step
    expect(beats().at(-1)).toMatchObject({ phase: 'idle', step: 1 });
    expect(new Set(beats().map((b) => b.msgId)).size).toBe(beats().length);
    const subjectsOfBeats = sent.filter((c) => c.type === 'wire.send' && c.message.kind === 'host.heartbeat').map((c) => c.subject);
    expect(new Set(subjectsOfBeats)).toEqual(new Set([subjects.podReport(RUN, 0, 0)]));
    a.stop();
  });

  it('a host awaiting a commit answers a state request with its committed state, not the prepared one', async () => {
    const t = topo();
    const { hosts, sent: sentBy } = cluster(t);
    const a = hosts.get('0/0')!;
    const sent = sentBy.get('0/0')!;
    const committed = Float32Array.from(a.getSnapshot().context.params);
    const per = t.training.globalBatch / (t.pods * t.hostsPerPod);
    for (const [key, h] of hosts) {
      const [p, k] = key.split('/').map(Number);
      const start = (p * t.hostsPerPod + k) * per;
      h.send(dispatch(p, 0, 0, { start, end: start + per }));
    }
    await Promise.all([...hosts.values()].map((h) => waitFor(h, holdsPrepared, { timeout: 5000 })));
    const prepared = a.getSnapshot().context.pending[0].shard;
    expect(shardHash(prepared)).not.toBe(shardHash(committed.subarray(0, prepared.length)));
    // host 0 of pod 1, restarted, heals: its pod says so, and it asks (request round 3)
    a.send(healExpect(1, now()));
    a.send(stateRequest('host/1/0', 3, now()));
    const out = sent.filter(
      (c) =>
        (c.type === 'wire.sendTensor' && c.head.tensor.startsWith('state.')) || (c.type === 'wire.send' && c.message.kind === 'state.done'),
    );
    expect(out.every((x) => x.subject === subjects.hostHeal(RUN, 1, 0, 0))).toBe(true);
    const tensors = out.filter((x) => x.type === 'wire.sendTensor') as Extract<WireCommand, { type: 'wire.sendTensor' }>[];
    expect(tensors.map((x) => [x.head.tensor, x.head.shard, x.head.attempt])).toEqual([
      ['state.params', 0, 3],
      ...a.getSnapshot().context.optState.map((_, i) => ['state.opt', i, 3]),
    ]);
    // the committed parameters (step 0 not yet committed), bit for bit
    expect(Buffer.from(tensors[0].data.buffer, tensors[0].data.byteOffset, tensors[0].data.byteLength)).toEqual(
      Buffer.from(committed.buffer),
    );
    const [done] = controlSent(out, 'state.done') as StateDone[];
    expect(done).toMatchObject({ step: 0, attempt: 3, reqId: 'r3', lastCommitted: null });
    // and the step still commits as prepared
    for (const [key, h] of hosts) h.send(commit(Number(key.split('/')[0]), 0, 0));
    expect(a.getSnapshot().value).toBe('idle');
    expect(shardHash(a.getSnapshot().context.params.subarray(0, prepared.length))).toBe(shardHash(prepared));
    for (const h of hosts.values()) h.stop();
  });

  it('run.end reports its counts to the pod', () => {
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: topo(), runId: RUN, pod: 1, host: 1, incarnation: 'test', now: now() },
      }).start(),
    );
    a.send({ type: 'wire.rejected', reason: 'checksum', at: now() });
    a.send({ type: 'run.end', msg: { v: 1, runId: RUN, step: 0, attempt: 0, sender: 'pod/1', msgId: 'e', kind: 'run.end' }, at: now() });
    expect(a.getSnapshot().value).toBe('stopped');
    const [stopped] = controlSent(sent, 'host.stopped') as { rejected: Record<string, number> }[];
    expect(stopped.rejected).toEqual({ checksum: 1 });
    expect((sent.at(-1) as { subject: string }).subject).toBe(subjects.podReport(RUN, 1, 1));
  });
});

describe('host machine: whom it serves its state, and how often (by the times events carry)', () => {
  const t = topo(); // 2 pods x 2 hosts, a heartbeat a second: an answer per peer per 500 ms at most, a pod's word holds 3 s
  const T = 1_000_000;

  /** Host 1 of pod 0, its sends recorded; `heal`: restarted, holding no state. */
  function host1(heal = false) {
    const sent: OneWireCommand[] = [];
    const a = joined(
      createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
        input: { topology: t, runId: RUN, pod: 0, host: 1, incarnation: 'test', heal, now: T },
      }).start(),
      T,
    );
    const answers = () => sent.filter((c) => c.subject === subjects.hostHeal(RUN, 1, 1, 0));
    const dones = () => controlSent(answers(), 'state.done') as StateDone[];
    return { a, sent, answers, dones };
  }

  it('answers no state request its pod has not said is healing: rejected and counted, nothing sent', () => {
    const { a, answers } = host1();
    for (let i = 1; i <= 1000; i++) a.send(stateRequest('host/1/1', i, T + i));
    expect(answers()).toEqual([]);
    expect(a.getSnapshot().context.rejected).toEqual({ 'state request not expected': 1000 });
    expect(a.getSnapshot().context.served).toBe(0);
    a.stop();
  });

  it('serves the peer its pod says heals once per half interval, whatever the rounds and ids; the rest is rejected as too soon', () => {
    const { a, answers, dones } = host1();
    expect(answerGapMs(t)).toBe(500);
    a.send(healExpect(1, T));
    // 10,000 requests in 2 s under new ids and rounds (a flood in the healer's name): 4 answers, at T+1, +501, +1001, +1501
    for (let i = 0; i < 10_000; i++) a.send(stateRequest('host/1/1', i + 1, T + 1 + i * 0.2));
    const c = a.getSnapshot().context;
    expect(dones().map((d) => d.reqId)).toEqual(['r1', 'r2501', 'r5001', 'r7501']);
    expect(c.served).toBe(4);
    expect(c.rejected).toEqual({ 'state request too soon': 9996 });
    // each answer is the state once: the parameters, each optimizer tensor, state.done
    expect(answers()).toHaveLength(4 * (1 + c.optState.length + 1));
    // what it keeps for this is one slot per pod, whatever came
    expect(c.serving).toEqual([
      { expectedUntil: -1, answeredAt: -1, early: undefined },
      { expectedUntil: T + expectWindowMs(t), answeredAt: T + 1 + 7500 * 0.2, early: undefined },
    ]);
    expect(c.phase).toBe('idle');
    a.stop();
  });

  it("the pod's word lapses heartbeat.misses intervals after it last came, and each word extends it", () => {
    const { a, dones } = host1();
    a.send(healExpect(1, T));
    a.send(stateRequest('host/1/1', 1, T + 2000));
    a.send(healExpect(1, T + 2500)); // said again while the peer heals: now until T+5500
    a.send(stateRequest('host/1/1', 2, T + 5000));
    a.send(stateRequest('host/1/1', 3, T + 5501)); // lapsed
    expect(dones().map((d) => d.reqId)).toEqual(['r1', 'r2']);
    expect(a.getSnapshot().context.rejected).toEqual({ 'state request not expected': 1 });
    a.stop();
  });

  it("the healer's request that came just before its pod's word is answered when the word comes; one more than an interval old is not", () => {
    const { a, dones } = host1();
    // the healer asks at once on restarting (rounds 1 and 2 here); the word comes through its pod, 300 ms later
    a.send(stateRequest('host/1/1', 1, T));
    a.send(stateRequest('host/1/1', 2, T + 10));
    a.send(healExpect(1, T + 300));
    expect(dones().map((d) => d.reqId)).toEqual(['r2']);
    expect(a.getSnapshot().context.serving[1]).toEqual({
      expectedUntil: T + 300 + expectWindowMs(t),
      answeredAt: T + 300,
      early: undefined,
    });
    // said again: nothing left to answer
    a.send(healExpect(1, T + 1300));
    expect(dones()).toHaveLength(1);
    expect(a.getSnapshot().context.rejected).toEqual({ 'state request not expected': 2 });

    // another host, whose healer asked 1001 ms before the word: it asks again by then, so that request is not answered
    const late = host1();
    late.a.send(stateRequest('host/1/1', 1, T));
    late.a.send(healExpect(1, T + 1001));
    expect(late.dones()).toEqual([]);
    late.a.send(stateRequest('host/1/1', 1, T + 1002));
    expect(late.dones().map((d) => d.reqId)).toEqual(['r1']);
    a.stop();
    late.a.stop();
  });

  it("only another pod's word is heard; the word of one pod lets no other pod's host be served", () => {
    const t3 = parseTopology({ ...preset('tiny'), pods: 3, training: { ...preset('tiny').training, globalBatch: 60 } });
    const sent: OneWireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
      input: { topology: t3, runId: RUN, pod: 0, host: 1, incarnation: 'test', now: T },
    }).start();
    a.send(healExpect(0, T)); // its own pod is no replica of itself (the edge lets neither through either)
    a.send(healExpect(7, T)); // no such pod
    expect(a.getSnapshot().context.rejected).toEqual({ 'not a peer pod': 2 });
    a.send(healExpect(2, T));
    a.send(stateRequest('host/1/1', 1, T + 1)); // pod 1's host: not said to heal
    a.send(stateRequest('host/2/1', 1, T + 1));
    expect(sent.filter((c) => c.subject === subjects.hostHeal(RUN, 1, 1, 0))).toEqual([]);
    expect(controlSent(sent, 'state.done').map((m) => m.sender)).toEqual(['host/0/1']);
    expect(sent.filter((c) => c.subject === subjects.hostHeal(RUN, 2, 1, 0)).length).toBeGreaterThan(0);
    expect(a.getSnapshot().context.rejected).toEqual({ 'not a peer pod': 2, 'state request not expected': 1 });
    expect(a.getSnapshot().context.serving).toHaveLength(3);
    a.stop();
  });

  it('a host holding no state says "none" to any peer that asks (no word needed: it gives nothing), at the same rate', () => {
    const { a, answers } = host1(true);
    expect(a.getSnapshot().value).toMatchObject({ healing: 'asked' });
    for (let i = 0; i < 1000; i++) a.send(stateRequest('host/1/1', i + 1, T + 1 + i));
    const nones = controlSent(answers(), 'state.none') as { reqId: string; reason: string }[];
    expect(nones.map((n) => n.reqId)).toEqual(['r1', 'r501']);
    expect(nones[0].reason).toBe('healing itself (restarted, no state yet)');
    expect(answers()).toHaveLength(2);
    expect(a.getSnapshot().context.rejected).toEqual({ 'state request too soon': 998 });
    a.stop();
  });

  describe('steps in flight (dispatch.depth 2)', () => {
    /** Send step `step`, attempt `attempt` to every host, each with its share of the samples. */
    const dispatchAll = (t: Topology, hosts: Map<string, HostActor>, step: number, attempt: number, committed: number) => {
      const per = t.training.globalBatch / (t.pods * t.hostsPerPod);
      for (const [key, a] of hosts) {
        const [p, h] = key.split('/').map(Number);
        const start = (p * t.hostsPerPod + h) * per;
        a.send(dispatch(p, step, attempt, { start, end: start + per }, committed));
      }
    };
    const preparedHash = (t: Topology, sent: Map<string, OneWireCommand[]>, pod: number, step: number, attempt: number) =>
      combineShardHashes(
        Array.from({ length: t.hostsPerPod }, (_, h) => {
          const m = (controlSent(sent.get(`${pod}/${h}`)!, 'host.prepared') as { step: number; attempt: number; shardHash: string }[]).find(
            (x) => x.step === step && x.attempt === attempt,
          );
          return m?.shardHash ?? 'none';
        }),
      );

    it("computes step s+1 on step s's prepared parameters before s commits; commits take them in step order, to the reference bits", async () => {
      const t = topo();
      expect(t.dispatch.depth).toBe(2);
      const { hosts, sent } = cluster(t);
      const ref = new ReferenceTrainer(t);
      const want = [ref.runStep().paramsHash, ref.runStep().paramsHash];
      dispatchAll(t, hosts, 0, 0, -1);
      dispatchAll(t, hosts, 1, 0, -1);
      await Promise.all([...hosts.values()].map((a) => waitFor(a, (s) => s.context.pending.length === 2, { timeout: 5000 })));
      for (let p = 0; p < t.pods; p++) for (const step of [0, 1]) expect(preparedHash(t, sent, p, step, 0)).toBe(want[step]);
      for (const a of hosts.values()) {
        const c = a.getSnapshot().context;
        expect(c.pending.map((x) => x.step)).toEqual([0, 1]); // both await their commits ...
        expect(c.lastCommitted).toBeUndefined(); // ... nothing is committed ...
        expect(c.step).toBe(2); // ... and the host is ready for step 2
      }
      const first = hosts.get('0/0')!;
      first.send(commit(0, 1, 0)); // out of order: refused, nothing changes
      expect(first.getSnapshot().context.pending.length).toBe(2);
      expect(first.getSnapshot().context.rejected).toEqual({ 'commit out of order': 1 });
      for (const step of [0, 1]) for (const [key, a] of hosts) a.send(commit(Number(key.split('/')[0]), step, 0));
      for (let p = 0; p < t.pods; p++) {
        const committed = Array.from({ length: t.hostsPerPod }, (_, h) => {
          const c = hosts.get(`${p}/${h}`)!.getSnapshot().context;
          expect(c.pending).toEqual([]);
          return c.lastCommitted!.shardHash;
        });
        expect(combineShardHashes(committed)).toBe(want[1]);
      }
      for (const a of hosts.values()) a.stop();
    });

    it("an abort of step s while step s+1's exchange waits drops both; run again under a new attempt, they come out the same", async () => {
      const t = topo();
      let cut = true;
      // pod 1's exchange of step 1 does not reach pod 0 (nor its resends): pod 0's hosts wait in step 1's exchange on step 0 prepared
      const { hosts, sent } = cluster(
        t,
        (cmd) =>
          cut &&
          cmd.type === 'wire.sendTensor' &&
          cmd.head.tensor === 'grad.exchange' &&
          cmd.head.step === 1 &&
          cmd.head.sender.startsWith('host/1/'),
      );
      dispatchAll(t, hosts, 0, 0, -1);
      dispatchAll(t, hosts, 1, 0, -1);
      const pod0 = [hosts.get('0/0')!, hosts.get('0/1')!];
      await Promise.all(pod0.map((a) => waitFor(a, (s) => s.matches({ attempt: 'exchange' }) && s.context.step === 1, { timeout: 5000 })));
      const initial = shardHash(pod0[0].getSnapshot().context.params);
      for (const a of pod0) {
        expect(a.getSnapshot().context.pending.map((x) => x.step)).toEqual([0]);
        a.send(abort(0, 0, 0));
        const c = a.getSnapshot().context;
        expect(a.getSnapshot().value).toBe('idle');
        expect(c).toMatchObject({ step: 0, attempt: 0, pending: [], queued: [] });
        expect(shardHash(c.params)).toBe(initial); // the committed parameters were never touched
      }
      expect(controlSent(sent.get('0/0')!, 'host.aborted')).toMatchObject([{ step: 0, attempt: 0 }]);
      // the client retries from step 0 under attempt 1: pod 1's hosts drop what they prepared of attempt 0, and all come out the same
      cut = false;
      dispatchAll(t, hosts, 0, 1, -1);
      dispatchAll(t, hosts, 1, 1, -1);
      await Promise.all(
        [...hosts.values()].map((a) => waitFor(a, (s) => s.context.pending.map((x) => x.attempt).join() === '1,1', { timeout: 5000 })),
      );
      const ref = new ReferenceTrainer(t);
      const want = [ref.runStep().paramsHash, ref.runStep().paramsHash];
      for (let p = 0; p < t.pods; p++) for (const step of [0, 1]) expect(preparedHash(t, sent, p, step, 1)).toBe(want[step]);
      for (const a of hosts.values()) a.stop();
    });

    it('a newer attempt drops what the host holds of older ones; a leftover dispatch older than what it holds before it is refused', async () => {
      const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
      const sent: OneWireCommand[] = [];
      const a = joined(
        createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
          input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
        }).start(),
      );
      const all = { start: 0, end: 64 };
      a.send(dispatch(0, 0, 0, all, -1));
      a.send(dispatch(0, 1, 0, all, -1));
      await waitFor(a, (s) => s.context.pending.length === 2, { timeout: 5000 });
      a.send(dispatch(0, 0, 1, all, -1)); // a retry from step 0: step 0 and step 1 of attempt 0 are dropped
      expect(a.getSnapshot().context).toMatchObject({ step: 0, attempt: 1, pending: [], queued: [] });
      await waitFor(a, (s) => s.context.pending.length === 1, { timeout: 5000 });
      a.send(dispatch(0, 1, 0, all, -1)); // a leftover of attempt 0: refused
      expect(a.getSnapshot().context.queued).toEqual([]);
      expect(a.getSnapshot().value).toBe('idle');
      a.send(dispatch(0, 1, 1, all, -1));
      await waitFor(a, (s) => s.context.pending.length === 2, { timeout: 5000 });
      expect(a.getSnapshot().context.pending.map((x) => [x.step, x.attempt])).toEqual([
        [0, 1],
        [1, 1],
      ]);
      a.stop();
    });

    it('reports how long it waited for each dispatch after preparing the step before: nothing when the dispatch was queued already', async () => {
      const t = topo({ pods: 1, hostsPerPod: 1 } as Partial<Topology>);
      const sent: OneWireCommand[] = [];
      const a = joined(
        createActor(hostMachine.provide({ actors: hostActors(recordingWire(sent)) }), {
          input: { topology: t, runId: RUN, pod: 0, host: 0, incarnation: 'test', now: now() },
        }).start(),
      );
      const all = { start: 0, end: 64 };
      a.send(dispatch(0, 0, 0, all, -1));
      a.send(dispatch(0, 1, 0, all, -1)); // queued behind step 0: starts the moment step 0 is prepared
      await waitFor(a, (s) => s.context.pending.length === 2, { timeout: 5000 });
      const preparedAt = a.getSnapshot().context.pending[1].at;
      a.send(commit(0, 0, 0));
      a.send({ ...dispatch(0, 2, 0, all, 0), at: preparedAt + 250 }); // the controller takes 250 ms to send step 2
      await waitFor(a, (s) => s.context.pending.some((p) => p.step === 2), { timeout: 5000 });
      const waited = (controlSent(sent, 'host.prepared') as { step: number; waitedMs: number }[]).map((m) => [m.step, m.waitedMs]);
      expect(waited).toEqual([
        [0, 0],
        [1, 0],
        [2, 250],
      ]);
      a.stop();
    });
  });
});
