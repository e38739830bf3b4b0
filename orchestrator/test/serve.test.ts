import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { decodeControl, encodeControl, isTensorFrame, preset, subjects } from '@lockstep/topology';
import { identityOf, type Credentials } from '@lockstep/infra';
import { hostGroups, hostProcessName, launch, runReference } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a host's heal subject carried: every message, with when it came and its size; the answers (state.done, state.none) apart. */
interface Watched {
  messages: { at: number; bytes: number }[];
  answers: { at: number; kind: string }[];
}

/**
 * A connection with the credentials of the process that runs host/1/1 (the only user the server lets publish as
 * host/1/1) floods host/0/1's `state` subject for host/1/1 with state.request messages naming host/1/1, its cross-pod
 * peer, as the sender, new ids and new rounds each, in `batches` of `perBatch`, one batch every 100 ms. Returns when
 * it was sent.
 */
async function flood(nc: NatsConnection, runId: string, o: { tag: string; batches: number; perBatch: number }) {
  const began = performance.now();
  let n = 0;
  for (let b = 0; b < o.batches; b++) {
    for (let i = 0; i < o.perBatch; i++) {
      n++;
      nc.publish(
        subjects.hostState(runId, 0, 1, 1),
        encodeControl({
          v: 1,
          runId,
          step: 0,
          attempt: n,
          sender: 'host/1/1',
          msgId: `flood/${o.tag}/${n}`,
          kind: 'state.request',
          reqId: `r${n}`,
        }),
      );
    }
    await nc.flush();
    await sleep(100);
  }
  return { began, ended: performance.now(), sent: n };
}

const within = (w: Watched, from: number, to: number) => ({
  messages: w.messages.filter((m) => m.at >= from && m.at <= to),
  answers: w.answers.filter((m) => m.at >= from && m.at <= to),
});

describe('a host serves its state only to the cross-pod peer its pod says heals, at a bounded rate (real processes, real nats-server)', () => {
  it("a flood of state requests under the peer host's name is served nothing while no pod says it heals, at most one answer per half interval while it does; every flooded request is counted as rejected; the run ends with the reference hash", async () => {
    const t = preset('tiny'); // a heartbeat a second: an answer per peer per 500 ms at most
    const steps = 400;
    const perFlood = 3000;
    let info: { runId: string; urls: string[]; credentials: Credentials | undefined } | undefined;
    const pids = new Map<string, number>();
    const watched: Watched = { messages: [], answers: [] };
    let healExpectSeen = 0;
    let probe:
      | Promise<{ quiet: ReturnType<typeof within>; healing: ReturnType<typeof within>; windowMs: number; sent: number }>
      | undefined;
    let killNow = () => {};
    const killDue = new Promise<void>((r) => (killNow = r));
    const result = await launch({
      topology: t,
      steps,
      runDir: tempDir(),
      log: quietLog,
      onCluster: (i) => (info = i),
      onSpawn: (name, pid) => pids.set(name, pid),
      onStep: (s) => {
        if (s.step === 3 && !probe)
          probe = (async () => {
            const { runId, urls, credentials } = info!;
            const login = (actor: string) => credentials!.users[identityOf(t, actor)!];
            // host/1/1's process's user floods and watches host/1/1's heal subject; host/0/1's watches its own expect subject
            const nc = await connect({ servers: urls[0], user: login('host/1/1').user, pass: login('host/1/1').password });
            const watcher = await connect({ servers: urls[0], user: login('host/0/1').user, pass: login('host/0/1').password });
            try {
              // what host/0/1 sends host/1/1 (on host/1/1's heal subject for pod 0), and pod 1's word to host/0/1 that host/1/1 heals
              nc.subscribe(subjects.hostHeal(runId, 1, 1, 0), {
                callback: (_e, m) => {
                  watched.messages.push({ at: performance.now(), bytes: m.data.length });
                  if (isTensorFrame(m.data)) return;
                  const d = decodeControl(m.data, t.wire.maxControlBytes);
                  if (d.ok && d.value.sender === 'host/0/1') watched.answers.push({ at: performance.now(), kind: d.value.kind });
                },
              });
              watcher.subscribe(subjects.hostExpect(runId, 0, 1, 1), {
                callback: (_e, m) => {
                  const d = decodeControl(m.data, t.wire.maxControlBytes);
                  if (d.ok && d.value.kind === 'heal.expect' && d.value.sender === 'pod/1') healExpectSeen++;
                },
              });
              await nc.flush();
              await watcher.flush();

              // 1. nobody heals: nothing is served
              const a = await flood(nc, runId, { tag: 'quiet', batches: 30, perBatch: perFlood / 30 });
              await sleep(500);
              const quiet = within(watched, a.began, performance.now());

              // 2. host/1/1 is killed; the launcher restarts it and it heals from host/0/1, as its pod now says
              await killDue;
              const g = hostGroups(t).find((x) => x.pod === 1 && x.hosts.includes(1))!;
              process.kill(pids.get(hostProcessName(g))!, 'SIGKILL');
              const until = performance.now() + 30_000;
              while (healExpectSeen === 0 && performance.now() < until) await sleep(20);
              expect(healExpectSeen).toBeGreaterThan(0);
              const b = await flood(nc, runId, { tag: 'healing', batches: 30, perBatch: perFlood / 30 });
              const healing = within(watched, b.began, b.ended + 100);
              return { quiet, healing, windowMs: b.ended + 100 - b.began, sent: a.sent + b.sent };
            } finally {
              await nc.close();
              await watcher.close();
            }
          })();
        // the kill (and the second flood) once the first flood is over and the run has gone on
        if (s.step === 60) killNow();
      },
    });
    const p = await probe!;

    // while no pod said host/1/1 heals: not one byte on its heal subject
    expect(p.quiet.messages).toEqual([]);
    // while it did: at most one answer per 500 ms (and one at the start), each the state once (~21 KB on tiny), in all
    // far from what 3000 answers would have been (~63 MB)
    const most = 2 + Math.ceil(p.windowMs / 500);
    expect(p.healing.answers.length).toBeLessThanOrEqual(most);
    const bytes = p.healing.messages.reduce((n, m) => n + m.bytes, 0);
    expect(bytes).toBeLessThanOrEqual(most * 32 * 1024);
    // every flooded request that was not answered is counted as rejected, in the run's summary
    const notExpected = result.rejected['state request not expected'] ?? 0;
    const tooSoon = result.rejected['state request too soon'] ?? 0;
    expect(notExpected).toBeGreaterThanOrEqual(perFlood);
    expect(notExpected + tooSoon).toBeGreaterThanOrEqual(p.sent - p.healing.answers.length);
    expect(result.restarts.map((r) => r.process)).toEqual([
      hostProcessName(hostGroups(t).find((x) => x.pod === 1 && x.hosts.includes(1))!),
    ]);
    expect(result.steps).toBe(steps);
    expect(result.paramsHash).toBe(runReference(t, steps).paramsHash);
  }, 240_000);
});
