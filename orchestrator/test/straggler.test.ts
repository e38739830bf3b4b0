import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseTopology, preset } from '@lockstep/topology';
import { launch, runReference } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

describe('a straggler that comes back', () => {
  it('SIGSTOP past the phase deadline, then SIGCONT: the step is retried (or its commit resent) and the run ends bitwise equal to the reference', async () => {
    const t = parseTopology({ ...preset('tiny'), deadlines: { startupMs: 60_000, phaseMs: 1_500, stepMs: 20_000 }, recovery: { maxAttempts: 6, maxResends: 5 } });
    const runDir = tempDir();
    let pid = 0;
    let slowest = 0;
    const result = await launch({
      topology: t,
      steps: 60,
      runDir,
      log: quietLog,
      onStep: (s) => {
        slowest = Math.max(slowest, s.ms);
        if (s.step !== 3 || pid) return;
        pid = Number(execFileSync('pgrep', ['-f', `host --pod 1 --hosts 0 .*${runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
        process.kill(pid, 'SIGSTOP');
        setTimeout(() => process.kill(pid, 'SIGCONT'), 2_500);
      },
    });
    expect(pid).toBeGreaterThan(0);
    expect(slowest).toBeGreaterThan(1_500); // the stall did hold a step up past the phase deadline
    // stalled mid-attempt: its peers time out and the attempt is retried; stalled after preparing: the commit is resent
    for (const r of result.retried) expect(r.reason).toMatch(/deadline of 1500 ms exceeded/);
    expect(result.steps).toBe(60);
    expect(result.podsIdenticalEveryStep).toBe(true);
    expect(result.paramsHash).toBe(runReference(t, 60).paramsHash);
  });
});
