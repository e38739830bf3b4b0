import { describe, expect, it } from 'vitest';
import { preset, type RunEvent } from '@lockstep/topology';
import { UiAddress } from '../src/ui/address.ts';
import { LiveRun } from '../src/ui/live.ts';
import { LiveStatus } from '../src/ui/status.ts';

const tiny = preset('tiny');
const hash = (c: string) => c.repeat(64);
const at = (ms: number) => ms * 1000;

describe("the status page's state (LiveRun)", () => {
  it('a host killed, restarted and healed: its process counts the restart, its row the heal from its peer; the retry and the commit are shown', () => {
    const live = new LiveRun({ topology: tiny, runId: 'r', steps: 2, supervised: true });
    const seen: string[] = [];
    live.subscribe((kind) => seen.push(kind));
    const events: RunEvent[] = [
      { kind: 'start', actor: 'host-0-1', at: at(1000), pid: 10, restart: 0 },
      { kind: 'fault', actor: 'host/0/1', at: at(1100), action: 'kill', detail: 'host-0-1 (pid 10)' },
      { kind: 'exit', actor: 'host-0-1', at: at(1101), exit: 'SIGKILL', restart: 1, expected: false, pid: 10 },
    ];
    for (const e of events) live.onEvent(e);
    expect(live.status(1102).hosts.find((h) => h.id === 'host/0/1')?.process.state).toBe('restarting');
    live.onEvent({ kind: 'start', actor: 'host-0-1', at: at(1200), pid: 11, restart: 1 });
    live.onEvent({ kind: 'heal', actor: 'host/0/1', at: at(1300), from: 'host/1/1', step: 0, bytes: 21056, ms: 20 });
    live.onEvent({
      kind: 'retry',
      actor: 'client',
      at: at(1400),
      failure: {
        kind: 'healing',
        step: 1,
        attempt: 0,
        pod: 0,
        cause: { kind: 'healing', actor: 'host/0/1' },
        message: 'host/0/1 is healing',
      },
    });
    live.onHeartbeat(
      { v: 1, runId: 'r', step: 1, attempt: 1, sender: 'host/0/1', msgId: 'hb', kind: 'host.heartbeat', phase: 'exchange' },
      1450,
    );
    live.onEvent({
      kind: 'step',
      actor: 'client',
      at: at(1500),
      step: 1,
      attempt: 1,
      loss: 0.5,
      paramsHash: hash('a'),
      podHashes: [hash('a'), hash('a')],
      podsAgree: true,
      phaseMs: {},
      hosts: {},
      retried: [],
      ms: 80,
      replayed: false,
    });
    const s = LiveStatus.parse(live.status(1500));
    const h = s.hosts.find((x) => x.id === 'host/0/1')!;
    expect(h.process).toEqual({ name: 'host-0-1', pid: 11, restarts: 1, state: 'running' });
    expect(h.heals).toBe(1);
    expect(h.lastHeal).toEqual({ from: 'host/1/1', bytes: 21056, ms: 20, step: 0 });
    expect({ phase: h.phase, step: h.step, attempt: h.attempt, heartbeatAgeMs: h.heartbeatAgeMs }).toEqual({
      phase: 'exchange',
      step: 1,
      attempt: 1,
      heartbeatAgeMs: 50,
    });
    expect(s.retries.map((r) => [r.step, r.attempt, r.kind])).toEqual([[1, 0, 'healing']]);
    expect(s.committed).toBe(1);
    expect(s.podHashes).toEqual([hash('a'), hash('a')]);
    expect(s.events.map((e) => e.kind)).toEqual(['fault', 'exit', 'restart', 'heal', 'retry']);
    expect(seen).toEqual(['fault', 'exit', 'restart', 'heal', 'retry', 'step']);
    expect(s.canKill).toBe(true);
    live.finish('finished');
    expect(live.status(1600).canKill).toBe(false);
  });

  it('DCN bytes/s is taken between two readings of the route counters', () => {
    const live = new LiveRun({ topology: tiny, runId: 'r', steps: 2, supervised: false });
    live.onRoutes({ inBytes: 1000, outBytes: 1000, inMsgs: 1, outMsgs: 1 }, 10_000);
    expect(live.status(10_000).dcn?.bytesPerSecond).toBeNull();
    live.onRoutes({ inBytes: 3000, outBytes: 2000, inMsgs: 3, outMsgs: 2 }, 10_500);
    expect(live.status(10_500).dcn?.bytesPerSecond).toBe(6000);
    expect(live.status(10_500).canKill).toBe(false);
  });
});

describe('--ui host:port', () => {
  it('takes host:port or a bare port; refuses the rest naming why', () => {
    expect(UiAddress.parse('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(UiAddress.parse('8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(UiAddress.parse('localhost:7373')).toEqual({ host: 'localhost', port: 7373 });
    expect(UiAddress.parse('0.0.0.0:7373')).toEqual({ host: '0.0.0.0', port: 7373 });
    for (const bad of ['', 'x', '1.2.3.4:70000', '300.1.1.1:80', 'example.com:80', '127.0.0.1:'])
      expect(UiAddress.safeParse(bad).error?.issues[0]?.message, bad).toMatch(/^must be host:port/);
  });
});
