import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { encodeTensor, preset, subjects, type HostPrepared } from '@lockstep/topology';
import { launch, runReference } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

/** Publish one of each kind of bad input into a live run's subjects. */
async function inject(nc: NatsConnection, run: string, step: number) {
  const env = (sender: string, msgId: string) => ({ v: 1, runId: run, step, attempt: 0, sender, msgId });
  // malformed JSON to a pod's command subject
  nc.publish(subjects.podCmd(run, 0), new TextEncoder().encode('{"kind": "step.commit",'));
  // wrong schema: a host.dispatch without its samples
  nc.publish(subjects.hostCmd(run, 0, 0), json({ ...env('pod/0', 'bad-schema'), kind: 'host.dispatch' }));
  // stale step: a host's prepared report for step 0, long committed
  const stale: HostPrepared = {
    ...env('host/0/1', 'bad-stale'),
    v: 1,
    step: 0,
    kind: 'host.prepared',
    shardHash: 'a'.repeat(64),
    lossSum: 1,
    phaseMs: {},
    waitedMs: 0,
  };
  nc.publish(subjects.podReport(run, 0, 1), json(stale));
  // forged sender: a host trying to commit a step
  nc.publish(subjects.podCmd(run, 1), json({ ...env('host/1/0', 'bad-forged'), kind: 'step.commit' }));
  // forged sender: a report naming host/0/1 on host/0/0's report subject (the one host/0/0's NATS user may publish on)
  nc.publish(subjects.podReport(run, 0, 0), json({ ...stale, sender: 'host/0/1', msgId: 'bad-impostor' }));
  // a corrupted tensor chunk: right header, flipped bit
  const [frame] = encodeTensor(
    { ...env('host/0/0', 'bad-chunk'), v: 1, kind: 'tensor.chunk', tensor: 'grad.slice', shard: 1 },
    new Float32Array(658),
    1 << 20,
  );
  frame[frame.length - 5] ^= 0x10;
  nc.publish(subjects.hostData(run, 0, 1, 0, 0), frame);
  // oversized for a control message (the server would take it; lockstep's limit is 64 KiB)
  nc.publish(subjects.podCmd(run, 0), json({ ...env('client', 'bad-big'), kind: 'step.commit', pad: 'x'.repeat(200_000) }));
  // a message for another run
  nc.publish(subjects.podCmd(run, 1), json({ ...env('client', 'bad-run'), runId: 'someone-else', kind: 'step.commit' }));
  await nc.flush();
}

describe('bad input on a live run', () => {
  it('malformed, wrong-schema, stale, forged, corrupted and oversized messages are rejected and counted; the run still matches the reference', async () => {
    const t = preset('tiny');
    let urls: string[] = [];
    let runId = '';
    let injected: Promise<void> | undefined;
    let overMaxPayload: unknown;
    const result = await launch({
      topology: t,
      steps: 20,
      runDir: tempDir(),
      log: quietLog,
      // what lockstep's own checks catch, behind NATS's permissions: one connection here must reach every subject
      auth: false,
      onCluster: (info) => {
        urls = info.urls;
        runId = info.runId;
      },
      onStep: (s) => {
        if (s.step !== 3) return;
        injected = (async () => {
          const nc = await connect({ servers: urls[0] });
          try {
            await inject(nc, runId, 4);
            try {
              nc.publish(subjects.podCmd(runId, 0), new Uint8Array(2 * 1024 * 1024));
            } catch (err) {
              overMaxPayload = err;
            }
          } finally {
            await nc.close();
          }
        })();
      },
    });
    await injected;
    expect(String(overMaxPayload)).toMatch(/max_payload|maximum payload|MAX_PAYLOAD/i);
    expect(result.rejected).toMatchObject({
      malformed: 1,
      schema: 1,
      'forged sender': 2,
      checksum: 1,
      oversized: 1,
      'wrong run': 1,
    });
    // the stale report injected, and on a loaded machine a host's own resent host.prepared that reached its pod after
    // the commit (a host repeats its report every heartbeat interval until the commit comes): seen 7 at load 17
    const stale = result.rejected['stale step'] ?? 0;
    expect(stale).toBeGreaterThanOrEqual(1);
    expect(result.rejectedTotal).toBe(7 + stale);
    expect(result.steps).toBe(20);
    expect(result.paramsHash).toBe(runReference(t, 20).paramsHash);
  }, 120_000);
});
