import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { preset, subjects } from '@lockstep/topology';
import type { Credentials } from '@lockstep/infra';
import { launch, runReference } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

describe('NATS users per role (credentials made by the launcher for the run)', () => {
  it('a host cannot publish a commit, an unauthenticated connection is refused, and the run is untouched', async () => {
    const t = preset('tiny');
    let info: { runId: string; urls: string[]; credentials: Credentials | undefined } | undefined;
    let probe: Promise<{ refused: string; violation: string; forgedSeen: number; realSeen: number }> | undefined;
    const result = await launch({
      topology: t,
      steps: 20,
      runDir: tempDir(),
      log: quietLog,
      onCluster: (i) => (info = i),
      onStep: (s) => {
        if (s.step !== 3) return;
        probe = (async () => {
          const { runId, urls, credentials } = info!;
          let refused = '';
          await connect({ servers: urls[0], reconnect: false }).then(
            (nc) => nc.close(),
            (err: Error) => (refused = err.message),
          );
          // a host's user listens to its own commands (allowed) and tries to publish a commit to another host (not allowed)
          const nc = await connect({ servers: urls[0], user: credentials!.host.user, pass: credentials!.host.password });
          let violation = '';
          void (async () => {
            for await (const st of nc.status()) if (st.type === 'error') violation = String((st as { error?: Error }).error?.message ?? '');
          })();
          let forgedSeen = 0;
          let realSeen = 0;
          nc.subscribe(subjects.hostCmd(runId, 0, 0), {
            callback: (_e, m) => {
              if (m.string().includes('forged-by-a-host')) forgedSeen++;
              else realSeen++;
            },
          });
          await nc.flush();
          nc.publish(
            subjects.hostCmd(runId, 0, 0),
            json({ v: 1, runId, step: 4, attempt: 0, sender: 'pod/0', msgId: 'forged-by-a-host', kind: 'host.commit' }),
          );
          await nc.flush().catch(() => {});
          await new Promise((r) => setTimeout(r, 1000));
          await nc.close();
          return { refused, violation, forgedSeen, realSeen };
        })();
      },
    });
    const p = await probe!;
    expect(p.refused).toMatch(/Authorization Violation/i);
    expect(p.violation).toMatch(/Permissions Violation for Publish to "lockstep\.[^.]+\.host\.0\.0\.cmd"/);
    expect(p.forgedSeen).toBe(0);
    expect(p.realSeen).toBeGreaterThan(0); // the pod's own commands still reach the host
    expect(result.steps).toBe(20);
    expect(result.paramsHash).toBe(runReference(t, 20).paramsHash);
  }, 120_000);
});
