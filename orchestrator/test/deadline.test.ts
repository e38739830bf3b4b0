import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseTopology, preset } from '@lockstep/topology';
import { launch, RunFailed } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

describe('a stalled host', () => {
  it('is detected by its silence, the attempt aborted, then the run ends within its deadlines with an error naming the step, the pod and the stalled host', async () => {
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
    // the start-up deadline naming the silent host. Stalled after preparing: a commit is never taken back, so its pod
    // waits for it, then names it.
    expect(err.message).toMatch(
      /not ready within 5000 ms to retry step \d+: pod\/0 \(host\/0\/1 silent\)|pod\/0 failed at step \d+ \(host\/0\/1, \w+\): no host.committed within 10000 ms from host\/0\/1/,
    );
    const inCommit = /no host\.committed/.test(err.message);
    const retried = ((err as RunFailed).summary as { retried: { reason: string }[] }).retried;
    expect(retried.length).toBe(inCommit ? 0 : 1);
    if (!inCommit)
      expect(retried[0].reason).toMatch(
        /pod\/0 failed at step \d+ \(host\/0\/1, \w+\): host\/0\/1 silent for \d+ ms \(no heartbeat; last phase \w+\)/,
      );
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
