import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  ANY,
  decodeTensorChunk,
  encodeControl,
  encodeTensor,
  parameterCount,
  preset,
  shardRange,
  subjects,
  type Topology,
} from '@lockstep/topology';
import { identityOf, type Credentials } from '@lockstep/infra';
import { launch, runReference, type TrainResult } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

type ClusterInfo = { runId: string; urls: string[]; credentials: Credentials | undefined };

/** Train tiny for 20 steps with the launcher's credentials; once step 3 is committed, `probe` runs against the live run. */
async function probed<T>(probe: (info: ClusterInfo & { t: Topology }) => Promise<T>): Promise<{ result: TrainResult; found: T }> {
  const t = preset('tiny');
  let info: ClusterInfo | undefined;
  let found: Promise<T> | undefined;
  const result = await launch({
    topology: t,
    steps: 20,
    runDir: tempDir(),
    log: quietLog,
    onCluster: (i) => (info = i),
    onStep: (s) => {
      if (s.step === 3) found = probe({ ...info!, t });
    },
  });
  return { result, found: await found! };
}

/** A connection to pod 0's server as the identity that runs `actor` (`host/0/0` logs in as host-0-0), collecting the server's errors. */
async function as(info: ClusterInfo & { t: Topology }, actor: string): Promise<{ nc: NatsConnection; errors: string[]; user: string }> {
  const user = identityOf(info.t, actor)!;
  const login = info.credentials!.users[user];
  const nc = await connect({ servers: info.urls[0], user: login.user, pass: login.password });
  const errors: string[] = [];
  void (async () => {
    for await (const st of nc.status()) if (st.type === 'error') errors.push(String((st as { error?: Error }).error?.message ?? ''));
  })();
  return { nc, errors, user };
}

/** Wait (up to 5 s) until the server has refused `n` publishes on `nc`. */
async function refusals(c: { nc: NatsConnection; errors: string[] }, n: number): Promise<string[]> {
  await c.nc.flush().catch(() => {});
  const until = Date.now() + 5000;
  while (c.errors.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200)); // and no more than that
  return c.errors;
}

const violation = (subject: string) => `Permissions Violation for Publish to "${subject}"`;

describe('a NATS user per process, allowed to publish only as the actors it runs (credentials made by the launcher for the run)', () => {
  it('a host cannot publish a commit, an unauthenticated connection is refused, and the run is untouched', async () => {
    const { result, found } = await probed(async (info) => {
      const { runId, urls } = info;
      let refused = '';
      await connect({ servers: urls[0], reconnect: false }).then(
        (nc) => nc.close(),
        (err: Error) => (refused = err.message),
      );
      // host/0/0's user listens to its own commands (allowed) and tries to publish a commit to itself (not allowed)
      const host = await as(info, 'host/0/0');
      let forgedSeen = 0;
      let realSeen = 0;
      host.nc.subscribe(subjects.hostCmd(runId, 0, 0), {
        callback: (_e, m) => {
          if (m.string().includes('forged-by-a-host')) forgedSeen++;
          else realSeen++;
        },
      });
      // the pod's own commands come to the host's process in batch frames (pod -> its process h0), which it may hear
      host.nc.subscribe(subjects.batch(runId, 0, 'h0', 'pod'), { callback: () => void realSeen++ });
      await host.nc.flush();
      host.nc.publish(
        subjects.hostCmd(runId, 0, 0),
        json({ v: 1, runId, step: 4, attempt: 0, sender: 'pod/0', msgId: 'forged-by-a-host', kind: 'host.commit' }),
      );
      const errors = await refusals(host, 1);
      await new Promise((r) => setTimeout(r, 800));
      await host.nc.close();
      return { refused, errors, forgedSeen, realSeen, user: host.user };
    });
    expect(found.user).toBe('host-0-0');
    expect(found.refused).toMatch(/Authorization Violation/i);
    expect(found.errors.join('\n')).toMatch(/Permissions Violation for Publish to "lockstep\.[^.]+\.host\.0\.0\.cmd"/);
    expect(found.forgedSeen).toBe(0);
    expect(found.realSeen).toBeGreaterThan(0); // the pod's own commands still reach the host's process
    expect(result.steps).toBe(20);
    expect(result.paramsHash).toBe(runReference(preset('tiny'), 20).paramsHash);
  }, 120_000);

  it("with host/0/0's credentials, a grad.slice, a host.prepared or a ping as host/0/1, anything on pod 1's reports, or a heal.expect as its pod, is refused by the server; as itself naming another, by the edge; the run ends with the reference hash", async () => {
    const { result, found } = await probed(async (info) => {
      const { runId, t } = info;
      const host = await as(info, 'host/0/0');
      const env = (msgId: string) => ({ v: 1 as const, runId, step: 4, attempt: 0, sender: 'host/0/1', msgId });
      // host/0/1's genuine grad.slice for step 4 (all zeros): what host/0/0 would slip in ahead of the real one
      const r = shardRange(parameterCount(t.model), t.hostsPerPod, 0);
      const slice = encodeTensor(
        { ...env('host/0/1/grad.slice.0/4/0@forged'), kind: 'tensor.chunk', tensor: 'grad.slice', shard: 0 },
        new Float32Array(r.end - r.start),
        t.wire.chunkBytes,
      );
      const prepared = encodeControl({
        ...env('forged-prepared'),
        kind: 'host.prepared',
        shardHash: 'f'.repeat(64),
        lossSum: 0,
        phaseMs: {},
        waitedMs: 0,
      });
      // the forged frames host/0/0 receives on its data subjects (from any sender): only the one on its own subject may arrive
      const arrived: string[] = [];
      host.nc.subscribe(subjects.hostData(runId, 0, 0, ANY, ANY), {
        callback: (_e, m) => {
          const d = decodeTensorChunk(m.data);
          if (d.ok && d.value.header.msgId.includes('@forged')) arrived.push(m.subject);
        },
      });
      await host.nc.flush();
      const refusedSubjects = [
        subjects.hostData(runId, 0, 0, 0, 1), // host/0/1's slice to host/0/0, on host/0/1's subject
        subjects.hostData(runId, 1, 1, 0, 1), // host/0/1's exchange to host/1/1
        subjects.podReport(runId, 0, 1), // host/0/1's prepared report
        subjects.podReport(runId, 1, 0), // pod 1's reports, as host/1/0 or as itself
        subjects.podReport(runId, 1, 1),
        subjects.hostPing(runId, 1, 1, 0), // host/0/1's ping to host/1/1
        subjects.hostExpect(runId, 1, 0, 0), // pod 0's word to host/1/0 that host/0/0 heals: only pod/0 may say it
      ];
      for (const f of slice) host.nc.publish(refusedSubjects[0], f);
      for (const f of slice) host.nc.publish(refusedSubjects[1], f);
      host.nc.publish(refusedSubjects[2], prepared);
      host.nc.publish(refusedSubjects[3], prepared);
      host.nc.publish(refusedSubjects[4], prepared);
      host.nc.publish(refusedSubjects[5], encodeControl({ ...env('forged-ping'), kind: 'ping' }));
      host.nc.publish(refusedSubjects[6], encodeControl({ ...env('forged-expect'), sender: 'pod/0', kind: 'heal.expect' }));
      const errors = await refusals(host, 2 * slice.length + 5);
      // on its own subject the server lets it through, and host/0/0's edge rejects the payload naming host/0/1
      host.nc.publish(subjects.hostData(runId, 0, 0, 0, 0), slice[0]);
      await host.nc.flush();
      await new Promise((r) => setTimeout(r, 500));
      await host.nc.close();
      return { errors, refusedSubjects, arrived, own: subjects.hostData(runId, 0, 0, 0, 0), frames: slice.length };
    });
    for (const s of found.refusedSubjects) expect(found.errors, s).toContain(violation(s));
    expect(found.errors).toHaveLength(2 * found.frames + 5);
    expect(found.arrived).toEqual([found.own]); // nothing on host/0/1's subject reached host/0/0 through the server
    expect(result.rejected['forged sender']).toBeGreaterThanOrEqual(1);
    expect(result.podsIdenticalEveryStep).toBe(true);
    expect(result.steps).toBe(20);
    expect(result.paramsHash).toBe(runReference(preset('tiny'), 20).paramsHash);
  }, 120_000);

  it("with pod/0's credentials, a report as pod/1 on the client's report subject, a command to pod 1's hosts, or a heal.expect as pod/1, is refused by the server; the run ends with the reference hash", async () => {
    const { result, found } = await probed(async (info) => {
      const { runId } = info;
      const pod = await as(info, 'pod/0');
      const env = { v: 1 as const, runId, step: 4, attempt: 0, sender: 'pod/1' };
      const refusedSubjects = [subjects.clientReport(runId, 1), subjects.hostCmd(runId, 1, 0), subjects.hostExpect(runId, 0, 1, 1)];
      pod.nc.publish(
        refusedSubjects[0],
        encodeControl({
          ...env,
          msgId: 'forged-pod-prepared',
          kind: 'pod.prepared',
          paramsHash: 'f'.repeat(64),
          shardHashes: ['f'.repeat(64), 'f'.repeat(64)],
          lossSum: 0,
          phaseMs: {},
          waitedMs: 0,
        }),
      );
      pod.nc.publish(refusedSubjects[1], encodeControl({ ...env, msgId: 'forged-commit', kind: 'host.commit' }));
      pod.nc.publish(refusedSubjects[2], encodeControl({ ...env, msgId: 'forged-expect', kind: 'heal.expect' }));
      const errors = await refusals(pod, 3);
      await pod.nc.close();
      return { errors, refusedSubjects, user: pod.user };
    });
    expect(found.user).toBe('pod-0');
    for (const s of found.refusedSubjects) expect(found.errors, s).toContain(violation(s));
    expect(found.errors).toHaveLength(found.refusedSubjects.length);
    expect(result.steps).toBe(20);
    expect(result.paramsHash).toBe(runReference(preset('tiny'), 20).paramsHash);
  }, 120_000);
});
