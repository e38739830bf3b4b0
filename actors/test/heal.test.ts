import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  encodeControl,
  initOptimizerState,
  initParams,
  parseTopology,
  preset,
  shardHash,
  shardRange,
  parameterCount,
  subjects,
  type Topology,
} from '@lockstep/topology';
import { connectNats, fetchState, serveState, type CommittedState } from '../src/index.ts';
import { quietLog, startNatsServer } from './helpers.ts';

const RUN = 'heal-test';
// chunks of 4 KiB, so the state crosses the wire in many frames
const t: Topology = parseTopology({
  ...preset('tiny'),
  wire: { chunkBytes: 4096, maxControlBytes: 65536 },
  heartbeat: { intervalMs: 50, misses: 3 },
});

function committed(host: number): CommittedState {
  const params = initParams(t.model, t.training.seed).map((x, i) => x + i * 1e-6);
  const r = shardRange(parameterCount(t.model), t.hostsPerPod, host);
  const opt = initOptimizerState(t.training.optimizer, r.end - r.start).map((o, k) => o.fill(k + 0.5));
  return { step: 8, params, optState: opt, lastCommitted: { step: 7, attempt: 2, shardHash: shardHash(params.subarray(r.start, r.end)) } };
}

describe('healing a restarted host from its cross-pod peer (real nats-server)', () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: 'heal-test', log: quietLog });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('host 1 of pod 1 gets exactly the committed parameters and optimizer state host 1 of pod 0 holds', async () => {
    const want = committed(1);
    const sub = serveState({ nc, topology: t, runId: RUN, pod: 0, host: 1, log: quietLog, state: async () => want });
    try {
      const r = await fetchState({ nc, topology: t, runId: RUN, pod: 1, host: 1, log: quietLog, deadlineMs: 5000 });
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.from).toBe('host/0/1');
      expect(r.state.step).toBe(8);
      expect(r.state.lastCommitted).toEqual(want.lastCommitted);
      expect(Buffer.from(r.state.params.buffer).equals(Buffer.from(want.params.buffer))).toBe(true);
      expect(r.state.optState.map((o) => o[0])).toEqual([0.5, 1.5]);
    } finally {
      sub.unsubscribe();
    }
  });

  it('a peer whose state does not hash to its committed shard hash is not believed', async () => {
    const bad = committed(1);
    bad.lastCommitted = { ...bad.lastCommitted!, shardHash: 'f'.repeat(64) };
    const sub = serveState({ nc, topology: t, runId: RUN, pod: 0, host: 1, log: quietLog, state: async () => bad });
    try {
      const r = await fetchState({ nc, topology: t, runId: RUN, pod: 1, host: 1, log: quietLog, deadlineMs: 600 });
      expect(r).toEqual({ ok: false, reason: expect.stringMatching(/^no peer delivered the state of shard 1 within 600 ms/) });
    } finally {
      sub.unsubscribe();
    }
  });

  it('when the only peer is healing too, no replica is left: said at once, not after the deadline', async () => {
    const sub = serveState({
      nc,
      topology: t,
      runId: RUN,
      pod: 0,
      host: 0,
      log: quietLog,
      state: async () => 'healing itself (restarted, no state yet)',
    });
    try {
      const began = performance.now();
      const r = await fetchState({ nc, topology: t, runId: RUN, pod: 1, host: 0, log: quietLog, deadlineMs: 10_000 });
      expect(r).toEqual({ ok: false, reason: 'no replica of shard 0 left: host/0/0 healing itself (restarted, no state yet)' });
      expect(performance.now() - began).toBeLessThan(5000);
    } finally {
      sub.unsubscribe();
    }
  });

  it('a request from a host of the same pod, or of another shard, is not served', async () => {
    let asked = 0;
    const sub = serveState({ nc, topology: t, runId: RUN, pod: 0, host: 1, log: quietLog, state: async () => (asked++, committed(1)) });
    const request = (sender: string, reqId: string) =>
      nc.publish(
        subjects.hostState(RUN, 0, 1),
        encodeControl({ v: 1, runId: RUN, step: 0, attempt: 0, sender, msgId: `${sender}/${reqId}`, kind: 'state.request', reqId }),
      );
    try {
      request('host/0/0', 'a'); // same pod
      request('host/1/0', 'b'); // another shard
      request('pod/1', 'c'); // not a host
      await nc.flush();
      await new Promise((r) => setTimeout(r, 200));
      expect(asked).toBe(0);
      request('host/1/1', 'd'); // its cross-pod peer
      await nc.flush();
      await new Promise((r) => setTimeout(r, 200));
      expect(asked).toBe(1);
    } finally {
      sub.unsubscribe();
    }
  });
});
