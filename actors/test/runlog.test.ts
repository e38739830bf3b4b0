import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, RunLog, RunLogConflict } from '../src/index.ts';
import { quietLog, startNatsServer } from './helpers.ts';

const H = (n: number) => n.toString(16).padStart(64, '0');
const rec = (step: number, hash = H(step + 1)) => ({ step, attempt: 0, paramsHash: hash, loss: 1 / (step + 1), at: 'now' });

describe('run log (a JetStream stream on a real nats-server)', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  const store = mkdtempSync(join(tmpdir(), 'lockstep-js-'));
  beforeAll(async () => {
    server = await startNatsServer(['-js', '-sd', store]);
    nc = await connectNats({ servers: server.url, name: 'runlog-test', log: quietLog });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('keeps steps in order; a step cannot be logged twice with another hash, nor one skipped', async () => {
    const log = await RunLog.open(nc, 'rl-a', quietLog);
    expect(await log.last()).toBeUndefined();
    for (let s = 0; s < 3; s++) await log.append(rec(s));
    expect((await log.last())?.step).toBe(2);
    await expect(log.append(rec(1, H(99)))).rejects.toThrow(RunLogConflict);
    await expect(log.append(rec(1, H(99)))).rejects.toThrow(/step 1 was committed with paramsHash 000000000000, now 000000000000/);
    await expect(log.append(rec(5))).rejects.toThrow(/an earlier step is missing/);
    expect((await log.all()).map((r) => r.step)).toEqual([0, 1, 2]);
  });

  it('a replay that reproduces a logged step is accepted and adds nothing', async () => {
    const log = await RunLog.open(nc, 'rl-b', quietLog);
    await log.append(rec(0));
    await log.append(rec(1));
    await log.append({ ...rec(0), attempt: 4 }); // same hash, another attempt: a replay after a restore
    expect((await log.all()).length).toBe(2);
  });

  it('survives a restart of its server (file storage), so a restarted client can resume', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-js-'));
    const s1 = await startNatsServer(['-js', '-sd', dir]);
    const c1 = await connectNats({ servers: s1.url, name: 'runlog-test-1', log: quietLog });
    const log1 = await RunLog.open(c1, 'rl-c', quietLog);
    await log1.append(rec(0));
    await log1.append(rec(1));
    await c1.close();
    await s1.stop();
    const s2 = await startNatsServer(['-js', '-sd', dir]);
    const c2 = await connectNats({ servers: s2.url, name: 'runlog-test-2', log: quietLog });
    try {
      const log2 = await RunLog.open(c2, 'rl-c', quietLog);
      expect(await log2.last()).toMatchObject({ step: 1, paramsHash: H(2) });
    } finally {
      await c2.close();
      await s2.stop();
    }
  });
});
