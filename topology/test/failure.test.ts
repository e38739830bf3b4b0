import { describe, expect, it } from 'vitest';
import {
  FailureCause,
  FailureKind,
  FailureReport,
  HostFailed,
  PodFailed,
  RunFailure,
  Scenario,
  causeMatches,
  describeCause,
  describeFailure,
  failureReport,
  type RunFailure as RunFailureT,
} from '../src/index.ts';

const H = (n: number) => n.toString(16).padStart(64, '0');
const env = { v: 1 as const, runId: 'r', step: 3, attempt: 1, msgId: 'm' };

const deadline: FailureCause = {
  kind: 'deadline',
  actor: 'host/0/0',
  phase: 'exchange',
  ms: 2000,
  waitingFor: 'grad.exchange',
  peers: [{ actor: 'host/1/0' }],
};

describe('the failure cause union', () => {
  it('lists every kind the machines produce', () => {
    expect([...FailureKind.options].sort()).toEqual(
      [
        'commitNotConfirmed',
        'computeError',
        'deadline',
        'hashMismatch',
        'healing',
        'idle',
        'lost',
        'podsNotReady',
        'restore',
        'runLog',
        'silent',
        'stopped',
        'tensorConflict',
      ].sort(),
    );
  });

  it('survives the wire: host.failed and pod.failed carry a cause that parses back to the same value', () => {
    const host = HostFailed.parse(JSON.parse(JSON.stringify({ ...env, sender: 'host/0/0', kind: 'host.failed', cause: deadline })));
    expect(host.cause).toEqual(deadline);
    const pod = PodFailed.parse(JSON.parse(JSON.stringify({ ...env, sender: 'pod/0', kind: 'pod.failed', host: 0, cause: host.cause })));
    expect(pod.cause).toEqual(deadline);
  });

  it('refuses a cause of an unknown kind, one missing its fields, and free text in place of a cause', () => {
    expect(FailureCause.safeParse({ kind: 'oops', actor: 'host/0/0' }).success).toBe(false);
    expect(FailureCause.safeParse({ kind: 'silent', actor: 'host/0/0', ms: 5 }).success).toBe(false); // no lastPhase
    expect(FailureCause.safeParse({ kind: 'silent', actor: 'nobody', ms: 5, lastPhase: 'idle' }).success).toBe(false);
    expect(
      HostFailed.safeParse({ ...env, sender: 'host/0/0', kind: 'host.failed', phase: 'exchange', reason: 'deadline of 100 ms exceeded' })
        .success,
    ).toBe(false);
  });

  it('a report keeps the kind on top, the typed failure, and the sentence made from it', () => {
    const f: RunFailureT = { step: 3, attempt: 1, pod: 0, host: 0, cause: deadline };
    const r = failureReport(f);
    expect(FailureReport.parse(r)).toEqual(r);
    expect(r).toEqual({ kind: 'deadline', ...f, message: describeFailure(f) });
    expect(RunFailure.parse(JSON.parse(JSON.stringify(f)))).toEqual(f);
  });
});

describe('describeFailure', () => {
  it('names the step, who reported it and the cause, for people', () => {
    expect(describeFailure({ step: 3, attempt: 1, pod: 0, host: 0, cause: deadline })).toBe(
      'step 3 (pod/0 reports from host/0/0): host/0/0: deadline of 2000 ms exceeded in exchange: no grad.exchange from host/1/0',
    );
    expect(
      describeFailure({ step: 5, attempt: 0, pod: 0, cause: { kind: 'silent', actor: 'host/0/1', ms: 1012.4, lastPhase: 'forward' } }),
    ).toBe('step 5 (pod/0 reports): host/0/1 silent for 1012 ms (no heartbeat; last phase forward)');
    expect(
      describeFailure({
        step: 7,
        attempt: 2,
        cause: {
          kind: 'podsNotReady',
          ms: 5000,
          pods: [
            { pod: 0, silentHosts: [1] },
            { pod: 1, silentHosts: [] },
          ],
        },
      }),
    ).toBe('step 7: not ready within 5000 ms: pod/0 (host/0/1 silent), pod/1 (scheduler silent)');
    expect(
      describeFailure({
        step: 0,
        attempt: 0,
        cause: {
          kind: 'hashMismatch',
          hashes: [
            { pod: 0, paramsHash: H(1) },
            { pod: 1, paramsHash: H(2) },
          ],
        },
      }),
    ).toBe('step 0: parameter hashes differ: pod/0=000000000000, pod/1=000000000000');
    expect(describeFailure(undefined)).toBe('aborted');
  });

  it('has a sentence for every kind, each naming what it is about', () => {
    const one: Record<FailureKind, FailureCause> = {
      deadline,
      silent: { kind: 'silent', actor: 'pod/1', ms: 900, lastPhase: 'running' },
      idle: { kind: 'idle', actor: 'host/1/1' },
      healing: { kind: 'healing', actor: 'host/1/1' },
      lost: { kind: 'lost', actor: 'host/1/1', peers: [{ actor: 'host/0/1', said: 'healing itself' }] },
      computeError: { kind: 'computeError', actor: 'host/0/1', phase: 'backward', message: 'NaN' },
      hashMismatch: { kind: 'hashMismatch', hashes: [{ pod: 0, paramsHash: H(9) }] },
      runLog: { kind: 'runLog', problem: 'conflict', detail: 'step 4 after 3 records' },
      restore: { kind: 'restore', checkpoint: 9, problem: 'wrongHash', actor: 'pod/1', paramsHash: { got: H(1), want: H(2) } },
      podsNotReady: { kind: 'podsNotReady', ms: 10, pods: [{ pod: 1, silentHosts: [] }] },
      commitNotConfirmed: { kind: 'commitNotConfirmed', actor: 'pod/0', ms: 10_000, peers: [{ actor: 'host/0/1', lastPhase: 'prepared' }] },
      tensorConflict: { kind: 'tensorConflict', actor: 'host/1/0', sender: 'host/0/0', tensor: 'grad.exchange', shard: 0, chunk: 2 },
      stopped: { kind: 'stopped', actor: 'pod/1' },
    };
    const said = Object.values(one).map(describeCause);
    expect(new Set(said).size).toBe(said.length);
    expect(describeCause(one.lost)).toBe('host/1/1 is lost: restarted with no replica of its shard left (host/0/1 healing itself)');
    expect(describeCause(one.runLog)).toBe('run log refused the commit: step 4 after 3 records');
    expect(describeCause(one.restore)).toBe('restore of checkpoint 9: pod/1 restored 000000000000, its manifest says 000000000000');
    expect(describeCause(one.commitNotConfirmed)).toBe('pod/0: commit not confirmed within 10000 ms by host/0/1 (last phase prepared)');
    expect(describeCause(one.tensorConflict)).toBe('host/1/0: two copies of grad.exchange shard 0 from host/0/0 differ (chunk 2)');
    expect(describeCause(one.stopped)).toBe('pod/1 stopped while the run was still going (it takes no more steps)');
  });
});

describe('a scenario expecting recovery', () => {
  it('may name kinds of failure that must be among the attempts retried; each must be a kind there is', () => {
    const base = { name: 's', topology: 'tiny', steps: 3 };
    expect(Scenario.parse({ ...base, expect: { outcome: 'recovers', retried: ['tensorConflict'] } }).expect).toEqual({
      outcome: 'recovers',
      retried: ['tensorConflict'],
    });
    expect(Scenario.parse({ ...base, expect: { outcome: 'recovers' } }).expect).toEqual({ outcome: 'recovers' });
    expect(Scenario.safeParse({ ...base, expect: { outcome: 'recovers', retried: ['notAKind'] } }).success).toBe(false);
    expect(Scenario.safeParse({ ...base, expect: { outcome: 'recovers', retried: [] } }).success).toBe(false);
  });
});

describe('a scenario expecting a failure', () => {
  const base = { name: 's', topology: 'tiny', steps: 3 };
  it('names a kind, fields of its cause, or (for older files) a message pattern; a kind must be one there is', () => {
    expect(Scenario.parse({ ...base, expect: { outcome: 'fails', failure: 'podsNotReady' } }).expect).toEqual({
      outcome: 'fails',
      failure: 'podsNotReady',
    });
    expect(Scenario.safeParse({ ...base, expect: { outcome: 'fails', error: 'not ready' } }).success).toBe(true);
    expect(Scenario.safeParse({ ...base, expect: { outcome: 'fails', failure: 'notAKind' } }).success).toBe(false);
    expect(Scenario.safeParse({ ...base, expect: { outcome: 'fails' } }).success).toBe(false);
  });

  it('matches a cause by the fields named, arrays element by element', () => {
    const got = { kind: 'podsNotReady', ms: 5000, pods: [{ pod: 0, silentHosts: [1] }] };
    expect(causeMatches(got, { pods: [{ pod: 0, silentHosts: [1] }] })).toBe(true);
    expect(causeMatches(got, { pods: [{ pod: 0 }] })).toBe(true);
    expect(causeMatches(got, { pods: [{ pod: 1, silentHosts: [] }] })).toBe(false);
    expect(causeMatches(got, { pods: [{ pod: 0, silentHosts: [] }] })).toBe(false);
    expect(causeMatches(got, { pods: [] })).toBe(false);
    expect(causeMatches(undefined, { pods: [] })).toBe(false);
  });
});
