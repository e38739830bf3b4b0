import type { Topology } from '@lockstep/topology';
import { hostGroups, hostProcessName } from '@lockstep/infra';
import { UsageError } from './errors.ts';
import { nowMicros, type RunRecorder } from './record/recorder.ts';
import type { Supervised } from './supervisor.ts';

/** The signal each process fault sends: a scenario's `kill`, `stop` and `cont`, and the status page's kill button. */
export const PROCESS_SIGNALS = { stop: 'SIGSTOP', cont: 'SIGCONT', kill: 'SIGKILL' } as const;
export type ProcessFaultAction = keyof typeof PROCESS_SIGNALS;

/** The process that runs `target` (client, pod/p, host/p/h, nats/p); UsageError when none does. */
export function processName(t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>, target: string): string {
  if (target === 'client') return 'client';
  const [role, p, h] = target.split('/');
  if (role === 'pod' && Number(p) < t.pods) return `pod-${p}`;
  if (role === 'nats' && Number(p) < t.pods) return `nats-${p}`;
  const g = role === 'host' ? hostGroups(t).find((x) => x.pod === Number(p) && x.hosts.includes(Number(h))) : undefined;
  if (!g) throw new UsageError(`no process runs ${target}`);
  return hostProcessName(g);
}

/** A process fault injected: the target named, the process signalled and its pid. */
export interface InjectedFault {
  target: string;
  process: string;
  pid: number;
}

/**
 * Process faults of a running launch (`LaunchOptions.onFaults`): the one way a
 * process of the run is killed, stopped or continued from outside, by the
 * chaos runner and by the status page's kill button alike. The signal goes to
 * the process its supervisor runs now (after a restart, the new one), and the
 * fault is recorded in the run's events.
 */
export class ProcessFaults {
  constructor(
    private readonly t: Pick<Topology, 'pods' | 'hostsPerPod' | 'hostsPerProcess'>,
    private readonly supervised: readonly Supervised[],
    private readonly record: RunRecorder,
  ) {}

  /**
   * Send `action`'s signal to the process that runs `target` (`host/0/1`, `pod/1`, `client`, `nats/0`). Returns what
   * was signalled, or undefined when that process is not running (it exited, or is being restarted). Throws UsageError
   * for a target no process runs.
   */
  inject(target: string, action: ProcessFaultAction): InjectedFault | undefined {
    const name = processName(this.t, target);
    const s = this.supervised.find((x) => x.name === name);
    const pid = s?.signal(PROCESS_SIGNALS[action]);
    if (pid === undefined) return undefined;
    this.record.record({ kind: 'fault', actor: target, at: nowMicros(), action, detail: `${name} (pid ${pid})` });
    return { target, process: name, pid };
  }
}
