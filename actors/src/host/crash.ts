import type { InspectionEvent } from 'xstate';
import type { Logger } from 'pino';
import { CrashPoint } from '@lockstep/topology';
import type { HostContext } from './host.machine.ts';

/**
 * Fault injection at an exact point of the protocol: the host process signals
 * itself (SIGKILL, or SIGSTOP for a straggler) the moment its host enters a
 * phase of a step (with `onPrepared`, only while a step before it awaits its
 * commit). Armed only by a scenario, through LOCKSTEP_CRASH_POINT.
 */
export function parseCrashPoint(raw: string | undefined): CrashPoint | undefined {
  if (!raw) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Error('LOCKSTEP_CRASH_POINT: not JSON');
  }
  const r = CrashPoint.safeParse(value);
  if (!r.success) throw new Error(`LOCKSTEP_CRASH_POINT: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/**
 * An inspector for the host's actor that fires at the crash point. It looks at
 * every microstep, not only the snapshot a macrostep settles in: a phase whose
 * tensors were already in (they came early) is entered and left in one event.
 */
export function crashInspector(
  point: CrashPoint,
  log: Logger,
  signal: (sig: CrashPoint['signal']) => void = (sig) => process.kill(process.pid, sig),
): (e: InspectionEvent) => void {
  let fired = false;
  return (e) => {
    if (fired || (e.type !== '@xstate.microstep' && e.type !== '@xstate.snapshot')) return;
    const c = (e.snapshot as { context?: Partial<HostContext> }).context;
    if (!c?.me?.startsWith('host/')) return; // a child actor's snapshot
    const hit =
      (point.phase === 'committed' ? c.lastCommitted?.step === point.step : c.step === point.step && c.phase === point.phase) &&
      (!point.onPrepared || (c.pending?.length ?? 0) > 0);
    if (!hit) return;
    fired = true;
    log.warn({ point }, 'crash point reached: signalling this process');
    signal(point.signal);
  };
}
