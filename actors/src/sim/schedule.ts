import { hostPhaseFloorsMs, type SimFault, type SimProfile, type SimSchedule, type Topology } from '@lockstep/topology';
import { SimRandom } from './clock.ts';

/**
 * Simulated time a fault-free step of `t` takes, roughly (ms): the window faults are drawn in scales with it. With
 * `compute: modeled` the phases last at least their modeled times (`hostPhaseFloorsMs`), which then set the step.
 */
export function stepEstimateMs(t: Topology, computeMs: number): number {
  const modeled = Object.values(hostPhaseFloorsMs(t)).reduce((a, b) => a + b, 0);
  return Math.max(6 * computeMs, modeled) + 10 + t.hostsPerPod * 0.05;
}

/**
 * Draw a schedule's faults from its seed for a profile: `messages` (drop,
 * duplicate, delay on every delivery, and sometimes a forged copy of a tensor chunk), `crashes` (1-3 actors killed and
 * restarted), `partitions` (1-2 DCN cuts, both ways or one way), `all` (all of
 * them, and sometimes a torn checkpoint), `none`. Faults fall within the
 * first ~80% of the run's expected length; message faults stop then too.
 */
export function drawSchedule(o: {
  seed: number;
  profile: SimProfile;
  topology: Topology;
  topologyName: string;
  steps: number;
  computeMs: number;
}): SimSchedule {
  const r = new SimRandom(o.seed ^ 0x5bd1e995);
  const t = o.topology;
  const window = Math.max(50, 0.8 * o.steps * stepEstimateMs(t, o.computeMs));
  const net = { drop: 0, duplicate: 0, delay: 0, delayMaxMs: 0 };
  const faults: SimFault[] = [];
  const messages = o.profile === 'messages' || o.profile === 'all';
  const crashes = o.profile === 'crashes' || o.profile === 'all';
  const partitions = o.profile === 'partitions' || o.profile === 'all';
  if (messages) {
    net.drop = r.next() * 0.05;
    net.duplicate = r.next() * 0.05;
    net.delay = r.next() * 0.1;
    net.delayMaxMs = 1 + r.next() * 200;
  }
  const beat = t.heartbeat.intervalMs;
  if (crashes) {
    const targets = [
      'client',
      ...Array.from({ length: t.pods }, (_, p) => `pod/${p}`),
      ...Array.from({ length: t.pods * t.hostsPerPod }, (_, i) => `host/${Math.floor(i / t.hostsPerPod)}/${i % t.hostsPerPod}`),
    ];
    for (let n = r.int(1, 3); n > 0; n--) {
      // hosts are most of a cluster, and the most interesting to kill: half the crashes hit one
      const target = r.chance(0.5) ? r.pick(targets.filter((x) => x.startsWith('host/'))) : r.pick(targets);
      faults.push({ kind: 'crash', at: r.next() * window, target, downMs: r.next() * 3 * beat });
    }
  }
  if (partitions) {
    for (let n = r.int(1, 2); n > 0; n--) {
      faults.push({
        kind: 'partition',
        at: r.next() * window,
        direction: r.pick(['both', 'forward', 'back'] as const),
        durationMs: r.next() * 5 * beat,
      });
    }
  }
  if (o.profile === 'all' && r.chance(0.2)) faults.push({ kind: 'tear', at: r.next() * window });
  // drawn last, so every draw before it (and so each seed's other faults) is what it was before forging existed
  if (messages && r.chance(0.3)) faults.push({ kind: 'forge', at: r.next() * window });
  // drawn after forging, for the same reason: sometimes both replicas of a shard die at once (only a checkpoint restore
  // brings it back) and the client dies in the replay that follows; its replacement must find the pods where they are
  if (crashes && r.chance(0.25)) {
    const at = r.next() * window;
    const h = r.int(0, t.hostsPerPod - 1);
    const downMs = r.next() * beat;
    for (let p = 0; p < t.pods; p++) faults.push({ kind: 'crash', at, target: `host/${p}/${h}`, downMs });
    faults.push({ kind: 'crash', at, target: 'client', downMs: r.next() * 3 * beat, inReplay: true });
  }
  faults.sort((a, b) => a.at - b.at);
  return {
    seed: o.seed,
    profile: o.profile,
    topology: o.topologyName,
    steps: o.steps,
    computeMs: o.computeMs,
    net,
    faultsUntilMs: messages ? window : 0,
    faults,
  };
}
