import { describe, expect, it } from 'vitest';
import { createActor, type SnapshotFrom } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { parseTopology, preset } from '@lockstep/topology';
import { clientMachine, describeFailure, type ClientEvent, type WireCommand } from '../src/index.ts';
import { controlSent, recordingWire } from './helpers.ts';

const RUN = 'test-run';
const t = parseTopology({ ...preset('tiny') });
const H = (n: number) => n.toString(16).padStart(64, '0');
type Snap = SnapshotFrom<typeof clientMachine>;
let n = 0;
const env = (step: number, attempt: number, pod: number) => ({ v: 1 as const, runId: RUN, step, attempt, sender: `pod/${pod}`, msgId: `m${n++}` });
const prepared = (pod: number, step: number, attempt: number, hash: string, lossSum = 0.25): ClientEvent => ({
  type: 'pod.prepared',
  msg: { ...env(step, attempt, pod), kind: 'pod.prepared', paramsHash: hash, shardHashes: [hash], lossSum, phaseMs: { exchange: 2 } },
});
const committed = (pod: number, step: number, attempt: number, hash: string): ClientEvent => ({ type: 'pod.committed', msg: { ...env(step, attempt, pod), kind: 'pod.committed', paramsHash: hash } });
const aborted = (pod: number, step: number, attempt: number): ClientEvent => ({ type: 'pod.aborted', msg: { ...env(step, attempt, pod), kind: 'pod.aborted' } });
const stopped = (pod: number): ClientEvent => ({ type: 'pod.stopped', msg: { ...env(0, 0, pod), kind: 'pod.stopped', rejected: { schema: pod + 1 }, duplicates: 1 } });
const failed = (pod: number, step: number, attempt: number): ClientEvent => ({
  type: 'pod.failed',
  msg: { ...env(step, attempt, pod), kind: 'pod.failed', host: 3, phase: 'exchange', reason: 'deadline of 100 ms exceeded' },
});

function start(steps: number) {
  const sent: WireCommand[] = [];
  const a = createActor(clientMachine.provide({ actors: { wire: recordingWire(sent) } }), { input: { topology: t, runId: RUN, steps } });
  a.subscribe({ error: () => {} });
  return { a: a.start(), sent };
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
    expect(a.getSnapshot().output).toMatchObject({ stepsCommitted: 2, paramsHash: H(2), rejected: { schema: 3 }, duplicates: 2, failure: undefined });
  });

  it('different hashes abort the step and end the run with a HashMismatch naming the step and pods', () => {
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
    expect(out.failure?.kind).toBe('hashMismatch');
    expect(describeFailure(out.failure)).toMatch(/parameter hashes differ at step 0: pod\/0=000000000000, pod\/1=000000000000/);
  });

  it('a pod failure aborts every pod and names pod, host and phase', () => {
    const { a, sent } = start(5);
    a.send(failed(1, 0, 0));
    expect(controlSent(sent, 'step.abort').length).toBe(2);
    a.send(aborted(0, 0, 0));
    a.send(failed(1, 0, 0)); // pod 1 cannot confirm; it counts as done aborting
    a.send(stopped(0));
    a.send(stopped(1));
    expect(describeFailure(a.getSnapshot().output!.failure)).toBe('pod/1 failed at step 0 (host/1/3, exchange): deadline of 100 ms exceeded');
  });

  it('graph walk: on every path, commit follows only a full set of agreeing prepares', () => {
    const machine = clientMachine.provide({ actors: { wire: recordingWire([]) } });
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
        prepared(0, step + 1, attempt, H(1)), // future: must be rejected
        committed(1, Math.max(0, step - 1), attempt, H(1)), // stale or not-yet: rejected unless in order
      ];
    };
    const paths = getShortestPaths(machine, {
      input: { topology: t, runId: RUN, steps: 3 },
      events: (s) => events(s as Snap),
      serializeState: (s) => {
        const c = (s as Snap).context;
        return JSON.stringify([(s as Snap).value, c.step, c.attempt, [...c.prepared.entries()].map(([k, v]) => [k, v.paramsHash]), [...c.committed.keys()], [...c.aborted]]);
      },
    });
    let commits = 0;
    for (const p of paths) {
      for (let i = 1; i < p.steps.length; i++) {
        const before = p.steps[i - 1].state as Snap;
        const next = p.steps[i].state as Snap;
        if (next.value === 'committing' && before.value !== 'committing') {
          commits++;
          const hashes = [...next.context.prepared.values()].map((m) => m.paramsHash);
          expect(hashes.length).toBe(t.pods);
          expect(new Set(hashes).size).toBe(1);
        }
      }
    }
    expect(commits).toBeGreaterThan(0);
    expect(paths.some((p) => (p.state as Snap).context.failure?.kind === 'hashMismatch')).toBe(true);
    expect(paths.some((p) => (p.state as Snap).context.stepsCommitted === 3)).toBe(true);
  });
});
