import type { AnyActorRef } from 'xstate';
import type { Logger } from 'pino';
import { CrashPoint } from '@lockstep/topology';
import type { HostContext } from './host.machine.ts';

/**
 * Fault injection at an exact point of the protocol: the host process signals
 * itself (SIGKILL, or SIGSTOP for a straggler) the moment its host enters a
 * phase of a step. Armed only by a scenario, through LOCKSTEP_CRASH_POINT.
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

export function armCrash(actor: AnyActorRef, point: CrashPoint, log: Logger): void {
  let fired = false;
  actor.subscribe((s: { context: HostContext }) => {
    if (fired) return;
    const c = s.context;
    const hit = point.phase === 'committed' ? c.lastCommitted?.step === point.step : c.step === point.step && c.phase === point.phase;
    if (!hit) return;
    fired = true;
    log.warn({ point }, 'crash point reached: signalling this process');
    process.kill(process.pid, point.signal);
  });
}
