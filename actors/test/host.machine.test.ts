import { describe, expect, it } from 'vitest';
import { createActor, waitFor, type Actor } from 'xstate';
import { ReferenceTrainer, combineShardHashes, parseTopology, preset, shardHash, subjects, type Topology } from '@lockstep/topology';
import { hostMachine, type HostEvent, type WireCommand } from '../src/index.ts';
import { controlSent, recordingWire } from './helpers.ts';

const RUN = 'test-run';

function topo(over: Partial<Topology> = {}): Topology {
  return parseTopology({ ...preset('tiny'), ...over });
}

function dispatch(pod: number, step: number, attempt: number, samples: { start: number; end: number }): HostEvent {
  return { type: 'host.dispatch', msg: { v: 1, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `d/${pod}/${step}/${attempt}/${Math.random()}`, kind: 'host.dispatch', samples } };
}
function commit(pod: number, step: number, attempt: number): HostEvent {
  return { type: 'host.commit', msg: { v: 1, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `c/${step}/${Math.random()}`, kind: 'host.commit' } };
}
function abort(pod: number, step: number, attempt: number): HostEvent {
  return { type: 'host.abort', msg: { v: 1, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `a/${step}/${Math.random()}`, kind: 'host.abort', reason: 'test' } };
}

type HostActor = Actor<typeof hostMachine>;

/** Every host of a topology as pure machines in one process, their tensor sends routed straight to each other. */
function cluster(t: Topology) {
  const sent = new Map<string, WireCommand[]>();
  const hosts = new Map<string, HostActor>();
  for (let p = 0; p < t.pods; p++) {
    for (let h = 0; h < t.hostsPerPod; h++) {
      const log: WireCommand[] = [];
      sent.set(`${p}/${h}`, log);
      const wire = recordingWire(log, (cmd) => {
        if (cmd.type !== 'wire.sendTensor') return;
        const [, , , tp, th] = cmd.subject.split('.');
        const data = Float32Array.from(cmd.data);
        queueMicrotask(() => hosts.get(`${tp}/${th}`)!.send({ type: 'tensor.received', tensor: { ...cmd.head, data } }));
      });
      const a = createActor(hostMachine.provide({ actors: { wire } }), { input: { topology: t, runId: RUN, pod: p, host: h } });
      a.subscribe({ error: (e) => console.error(e) });
      hosts.set(`${p}/${h}`, a.start());
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
      await Promise.all([...hosts.values()].map((a) => waitFor(a, (s) => s.matches({ attempt: 'prepared' }), { timeout: 5000 })));
      const expected = ref.runStep().paramsHash;
      for (let p = 0; p < t.pods; p++) {
        const shardHashes = Array.from({ length: t.hostsPerPod }, (_, h) => controlSent(sent.get(`${p}/${h}`)!, 'host.prepared').at(-1)!).map((m) => (m as { shardHash: string }).shardHash);
        expect(combineShardHashes(shardHashes)).toBe(expected);
      }
      for (const [key, a] of hosts) a.send(commit(Number(key.split('/')[0]), step, 0));
      for (const a of hosts.values()) expect(a.getSnapshot().value).toBe('idle');
    }
    // every host timed every phase of every step, and reported it with prepared
    const prepared = controlSent(sent.get('1/1')!, 'host.prepared') as { phaseMs: Record<string, number> }[];
    expect(prepared.length).toBe(4);
    for (const p of prepared) expect(Object.keys(p.phaseMs).sort()).toEqual(['allGather', 'backward', 'exchange', 'forward', 'reduceScatter', 'update']);
  });

  it('rejects wrong-order, stale, wrong-attempt and repeated events and leaves its state unchanged', async () => {
    const t = topo({ pods: 1 } as Partial<Topology>);
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, pod: 0, host: 0 } }).start();
    const snapshotOf = () => ({ value: a.getSnapshot().value, step: a.getSnapshot().context.step, attempt: a.getSnapshot().context.attempt });

    a.send(commit(0, 0, 0)); // commit before any dispatch
    expect(snapshotOf()).toEqual({ value: 'idle', step: 0, attempt: -1 });
    a.send(dispatch(0, 1, 0, { start: 0, end: 16 })); // a future step
    expect(snapshotOf()).toEqual({ value: 'idle', step: 0, attempt: -1 });

    const d = dispatch(0, 0, 0, { start: 0, end: 16 });
    a.send(d);
    await waitFor(a, (s) => s.matches({ attempt: 'reduceScatter' }), { timeout: 5000 }); // waits for host/0/1's slice
    const before = snapshotOf();
    a.send(d); // the same dispatch again
    a.send(commit(0, 0, 0)); // commit in reduceScatter: out of order
    a.send({ type: 'tensor.received', tensor: { step: 0, attempt: 1, sender: 'host/0/1', tensor: 'grad.slice', shard: 0, data: new Float32Array(1316) } });
    expect(snapshotOf()).toEqual(before);
    expect(a.getSnapshot().context.rejected).toEqual({ 'future step': 1, 'wrong attempt': 1, 'not expected in reduceScatter': 2 });
    expect(a.getSnapshot().context.early.length).toBe(1); // a peer's tensor for attempt 1 is kept, not applied

    // the right slice arrives once, then again: the repeat is a duplicate, not a second contribution
    const slice = { step: 0, attempt: 0, sender: 'host/0/1', tensor: 'grad.slice' as const, shard: 0, data: new Float32Array(1316) };
    a.send({ type: 'tensor.received', tensor: slice });
    await waitFor(a, (s) => s.matches({ attempt: 'allGather' }), { timeout: 5000 });
    a.send({ type: 'tensor.received', tensor: slice });
    expect(a.getSnapshot().context.duplicates).toBe(1);
    expect(a.getSnapshot().context.slices.size).toBe(1);
  });

  it('holds tensors that arrive before their dispatch, and uses them', async () => {
    const t = topo({ pods: 1 } as Partial<Topology>);
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, pod: 0, host: 0 } }).start();
    a.send({ type: 'tensor.received', tensor: { step: 0, attempt: 0, sender: 'host/0/1', tensor: 'grad.slice', shard: 0, data: new Float32Array(1316) } });
    expect(a.getSnapshot().context.early.length).toBe(1);
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    await waitFor(a, (s) => s.matches({ attempt: 'allGather' }), { timeout: 5000 });
    expect(a.getSnapshot().context.slices.has(1)).toBe(true);
  });

  it('a missed deadline fails the attempt naming the missing peer; abort keeps the committed parameters', async () => {
    const t = parseTopology({ ...preset('tiny'), deadlines: { startupMs: 1000, phaseMs: 100, stepMs: 1000 } });
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, pod: 0, host: 0 } }).start();
    const before = shardHash(a.getSnapshot().context.params);
    a.send(dispatch(0, 0, 0, { start: 0, end: 16 }));
    await waitFor(a, (s) => s.matches({ attempt: 'failed' }), { timeout: 5000 });
    const [failed] = controlSent(sent, 'host.failed') as { phase: string; reason: string }[];
    expect(failed.phase).toBe('reduceScatter');
    expect(failed.reason).toMatch(/deadline of 100 ms exceeded: no grad\.slice yet from host\/0\/1/);
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
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, pod: 0, host: 0 } }).start();
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    await waitFor(a, (s) => s.matches({ attempt: 'prepared' }), { timeout: 5000 });
    a.send(commit(0, 0, 0));
    const hash = shardHash(a.getSnapshot().context.params);
    a.send(commit(0, 0, 0));
    const confirmations = controlSent(sent, 'host.committed') as { step: number; shardHash: string }[];
    expect(confirmations.map((m) => [m.step, m.shardHash])).toEqual([
      [0, hash],
      [0, hash],
    ]);
    a.send(dispatch(0, 1, 0, { start: 0, end: 64 }));
    await waitFor(a, (s) => s.matches({ attempt: 'prepared' }), { timeout: 5000 });
    a.send(dispatch(0, 1, 1, { start: 0, end: 64 })); // attempt 1 supersedes attempt 0 even when prepared
    expect(a.getSnapshot().context.attempt).toBe(1);
    expect(shardHash(a.getSnapshot().context.params)).toBe(hash); // committed parameters untouched
  });

  it('repeats its prepared report every heartbeat interval until the pod answers, each under a new id', async () => {
    const t = parseTopology({ ...preset('tiny'), pods: 1, hostsPerPod: 1, heartbeat: { intervalMs: 20, misses: 3 } });
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, pod: 0, host: 0 } }).start();
    a.send(dispatch(0, 0, 0, { start: 0, end: 64 }));
    await waitFor(a, (s) => s.context.resends >= 2, { timeout: 5000 });
    const reports = controlSent(sent, 'host.prepared');
    expect(reports.length).toBeGreaterThanOrEqual(3);
    expect(new Set(reports.map((m) => m.msgId)).size).toBe(reports.length);
    expect(new Set(reports.map((m) => (m as { shardHash: string }).shardHash)).size).toBe(1);
    a.send(commit(0, 0, 0));
    const n = controlSent(sent, 'host.prepared').length;
    await new Promise((r) => setTimeout(r, 60));
    expect(controlSent(sent, 'host.prepared').length).toBe(n); // answered: no more repeats
    a.stop();
  });

  it('run.end reports its counts to the pod', () => {
    const sent: WireCommand[] = [];
    const a = createActor(hostMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: topo(), runId: RUN, pod: 1, host: 1 } }).start();
    a.send({ type: 'wire.rejected', reason: 'checksum' });
    a.send({ type: 'run.end', msg: { v: 1, runId: RUN, step: 0, attempt: 0, sender: 'pod/1', msgId: 'e', kind: 'run.end' } });
    expect(a.getSnapshot().value).toBe('stopped');
    const [stopped] = controlSent(sent, 'host.stopped') as { rejected: Record<string, number> }[];
    expect(stopped.rejected).toEqual({ checksum: 1 });
    expect((sent.at(-1) as { subject: string }).subject).toBe(subjects.podReport(RUN, 1));
  });
});
