import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FailureReport, parseTopology, preset } from '@lockstep/topology';
import { launch, RunFailed, type TrainResult } from '../src/index.ts';
import { cli, quietLog, tempDir } from './helpers.ts';

describe('a stalled host', () => {
  it('is detected by its silence, the attempt aborted, then the run ends within its deadlines with a typed failure naming the step, the pod and the stalled host', async () => {
    const t = parseTopology({
      ...preset('tiny'),
      deadlines: { startupMs: 5_000, phaseMs: 2_000, stepMs: 10_000 },
      heartbeat: { intervalMs: 250, misses: 4 },
    });
    const runDir = tempDir();
    let stalled = 0;
    let stalledAt = 0;
    const err = await launch({
      topology: t,
      steps: 1000,
      runDir,
      log: quietLog,
      onStep: (s) => {
        if (s.step !== 3 || stalled) return;
        stalled = Number(
          execFileSync('pgrep', ['-f', `host --pod 0 --hosts 1 .*${runDir}`], { encoding: 'utf8' })
            .trim()
            .split('\n')[0],
        );
        process.kill(stalled, 'SIGSTOP'); // a straggler: alive, silent
        stalledAt = Date.now();
      },
    }).then(
      () => new Error('the run finished although a host was stopped'),
      (e: unknown) => e as Error,
    );
    expect(stalled).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(RunFailed);
    // Stalled mid-attempt: its heartbeats stop, its pod names it (1 s of silence, before any 2 s phase deadline), the
    // attempt is aborted, and the retry waits for the pod to report every host up: it never does, so the run ends at
    // the start-up deadline naming the silent host (podsNotReady). Stalled after preparing: a commit is never taken
    // back, so its pod waits for it, then names it (commitNotConfirmed).
    const failed = err as RunFailed;
    const f = failed.failure!;
    expect(FailureReport.parse(f)).toEqual(f); // what the client printed survived the process boundary whole
    expect(failed.kind).toBe(f.cause.kind);
    expect((failed.summary as TrainResult).failure).toEqual(f);
    const inCommit = f.cause.kind === 'commitNotConfirmed';
    if (inCommit)
      expect(f).toMatchObject({
        pod: 0,
        cause: { kind: 'commitNotConfirmed', actor: 'pod/0', ms: 10_000, peers: [{ actor: 'host/0/1' }] },
      });
    else expect(f.cause).toEqual({ kind: 'podsNotReady', ms: 5000, pods: [{ pod: 0, silentHosts: [1] }] });
    expect(err.message).toContain(`${f.kind}: ${f.message}`);
    const retried = (failed.summary as TrainResult).retried;
    expect(retried.length).toBe(inCommit ? 0 : 1);
    // the pod names the silent host after 1 s; a peer waiting on its tensors gives up at the 2 s phase deadline, which
    // comes first only when the machine is loaded enough to delay the pod's check by a second (seen at load 25)
    if (!inCommit && retried[0]?.kind === 'deadline') expect(retried[0]).toMatchObject({ pod: 0, cause: { kind: 'deadline' } });
    else if (!inCommit) expect(retried[0]).toMatchObject({ kind: 'silent', pod: 0, cause: { kind: 'silent', actor: 'host/0/1' } });
    // liveness, not speed: the phase, abort and stop deadlines (2 s each) bound it far below this
    expect(Date.now() - stalledAt).toBeLessThan(60_000);
    const alive = (() => {
      try {
        process.kill(stalled, 0);
        return true;
      } catch {
        return false;
      }
    })();
    expect(alive).toBe(false); // the launcher killed the stopped process on its way out
  });
});

describe('train --json of a failing run', () => {
  it('exits 1 and prints the typed failure: the kind on top, the cause with the actors it names, and the summary carrying the same', () => {
    const dir = tempDir();
    const file = join(dir, 'topology.json');
    // every pod.prepared is dropped: each attempt runs out its step deadline with the client waiting for both pods
    const t = {
      ...preset('tiny'),
      deadlines: { startupMs: 5_000, phaseMs: 1_000, stepMs: 1_500 },
      recovery: { ...preset('tiny').recovery, maxAttempts: 2 },
      faults: { seed: 1, rules: [{ action: 'drop', probability: 1, kinds: ['pod.prepared'] }] },
    };
    writeFileSync(file, JSON.stringify(t));
    const r = cli(['train', '-t', file, '-s', '3', '--json', '--run-dir', join(dir, 'run')], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(1);
    const error = r.json!.error as { name: string; kind: string; failure: unknown };
    expect(error.name).toBe('RunFailed');
    expect(error.kind).toBe('deadline');
    const f = FailureReport.parse(error.failure);
    expect(f).toMatchObject({
      kind: 'deadline',
      step: 0,
      attempt: 1,
      cause: { kind: 'deadline', actor: 'client', phase: 'awaitPrepared', ms: 1_500, waitingFor: 'pod.prepared' },
    });
    expect(f.pod).toBeUndefined(); // the client found it itself
    expect(f.cause.kind === 'deadline' && f.cause.peers.map((p) => p.actor)).toEqual(['pod/0', 'pod/1']);
    const partial = r.json!.partial as TrainResult;
    expect(partial.failure).toEqual(f);
    expect(partial.retried.map((x) => [x.kind, x.attempt])).toEqual([['deadline', 0]]);
  });
});
