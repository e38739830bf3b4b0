import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { ANY, encodeControl, preset, subjects } from '@lockstep/topology';
import { SimClock, SimNetwork, SimRandom, edgeFor, listenFor, podMachine, ticker } from '../src/index.ts';
import { quietLog } from './helpers.ts';

/**
 * Who sent a message: its subject says (the server lets each actor publish only with its own tokens),
 * and the edge holds the payload's `sender` to it. Here on the simulated network, which routes
 * subscriptions with wildcards as a nats-server would.
 */
const RUN = 'identity';

function network() {
  const clock = new SimClock();
  const net = new SimNetwork(clock, new SimRandom(1), { inPodMs: 1, crossPodMs: 2 });
  const settle = (ms = 50) => {
    const until = clock.now() + ms;
    while ((clock.peek() ?? Number.POSITIVE_INFINITY) <= until) clock.next();
  };
  return { clock, net, settle };
}

describe('the simulated network routes subscriptions as a nats-server does', () => {
  it('exact subjects, `*` for the last tokens (by the receiver prefix), other patterns; each delivery with its subject', () => {
    const { net, settle } = network();
    const got: string[] = [];
    const on = (name: string, pattern: string) =>
      net.transport(name, 0).subscribe(pattern, (bytes, subject) => got.push(`${name} <- ${subject} ${new TextDecoder().decode(bytes)}`));
    on('exact', subjects.podCmd(RUN, 0));
    on('data01', subjects.hostData(RUN, 0, 1, ANY, ANY));
    on('data10', subjects.hostData(RUN, 1, 0, ANY, ANY));
    on('report0', subjects.podReport(RUN, 0, ANY));
    const unsubscribe = on('all', `lockstep.${RUN}.host.*.1.>`);
    const tx = net.transport('sender', 0);
    const say = (subject: string, what: string) => tx.publish(subject, new TextEncoder().encode(what));
    say(subjects.podCmd(RUN, 0), 'a');
    say(subjects.hostData(RUN, 0, 1, 1, 0), 'b');
    say(subjects.hostData(RUN, 1, 0, 0, 0), 'c');
    say(subjects.podReport(RUN, 0, 1), 'd');
    say(subjects.podReport(RUN, 1, 1), 'nobody');
    say(`lockstep.${RUN}.host.0.1.data.1`, 'too short for data01');
    say(`lockstep.${RUN}.host.0.1.data.1.0.9`, 'too long for data01');
    say(subjects.hostData(RUN, 0, 1, 0, 0), 'e');
    settle();
    unsubscribe();
    say(subjects.hostData(RUN, 0, 1, 0, 0), 'f');
    settle();
    expect(got).toEqual([
      `exact <- ${subjects.podCmd(RUN, 0)} a`,
      `data01 <- ${subjects.hostData(RUN, 0, 1, 1, 0)} b`,
      `all <- ${subjects.hostData(RUN, 0, 1, 1, 0)} b`,
      `data10 <- ${subjects.hostData(RUN, 1, 0, 0, 0)} c`,
      `report0 <- ${subjects.podReport(RUN, 0, 1)} d`,
      `all <- lockstep.${RUN}.host.0.1.data.1 too short for data01`,
      `all <- lockstep.${RUN}.host.0.1.data.1.0.9 too long for data01`,
      `data01 <- ${subjects.hostData(RUN, 0, 1, 0, 0)} e`,
      `all <- ${subjects.hostData(RUN, 0, 1, 0, 0)} e`,
      `data01 <- ${subjects.hostData(RUN, 0, 1, 0, 0)} f`,
    ]);
  });
});

describe("the edge holds a message's sender to its subject", () => {
  it('a report naming host/0/1 on host/0/0 subject is rejected as a forged sender and counted by the pod; the genuine one is not', () => {
    const { clock, net, settle } = network();
    const t = preset('tiny');
    const wire = edgeFor(t, 'pod', {
      transport: net.transport('pod/0', 0),
      clock,
      runId: RUN,
      log: quietLog,
      listen: listenFor(t, RUN, { role: 'pod', pod: 0 }),
    });
    const pod = createActor(podMachine.provide({ actors: { wire, clock: ticker(clock) } }), {
      input: { topology: t, runId: RUN, pod: 0, incarnation: '1', rejoin: false, now: clock.now() },
      clock,
    }).start();
    const host00 = net.transport('host/0/0', 0);
    const beat = (sender: string, msgId: string) =>
      encodeControl({ v: 1, runId: RUN, step: 0, attempt: 0, sender, msgId, kind: 'host.heartbeat', phase: 'idle' });
    host00.publish(subjects.podReport(RUN, 0, 0), beat('host/0/1', 'forged')); // host/0/0, as host/0/1
    host00.publish(subjects.podReport(RUN, 0, 0), beat('host/0/0', 'genuine'));
    settle();
    expect(pod.getSnapshot().context.rejected).toEqual({ 'forged sender': 1 });
    pod.stop();
  });
});
