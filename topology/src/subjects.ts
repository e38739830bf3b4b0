/**
 * Every NATS subject lockstep uses, in one place. `run` is the run id.
 *
 *   lockstep.<run>.client.report        pods -> client   (pod.prepared, pod.committed, ...)
 *   lockstep.<run>.pod.<p>.cmd          client -> pod p  (step.dispatch, step.commit, ...)
 *   lockstep.<run>.pod.<p>.report       hosts of p -> pod p (host.heartbeat, host.prepared, ...)
 *   lockstep.<run>.host.<p>.<h>.cmd     pod p -> its host h (host.dispatch, host.commit, ...)
 *   lockstep.<run>.host.<p>.<h>.data    tensor chunks for host h of pod p (in-pod and cross-pod), and tensor.request asking h for one again
 *   lockstep.<run>.host.<p>.<h>.ping    start-up ping and pong between host h of pod p and host h of another pod
 *   lockstep.<run>.host.<p>.<h>.state   state.request from host h of another pod (healing), heal.expect from another pod (its host h heals)
 *   lockstep.<run>.host.<p>.<h>.heal    the committed state sent back to a healing host h
 *   lockstep.<run>.progress             client -> observers: one message per committed step
 *
 * Each direction has its own subject so that per-role permissions can say who
 * may publish what (a host can publish reports and data, never a command).
 */
export const subjects = {
  root: (run: string) => `lockstep.${run}`,
  clientReport: (run: string) => `lockstep.${run}.client.report`,
  podCmd: (run: string, pod: number) => `lockstep.${run}.pod.${pod}.cmd`,
  podReport: (run: string, pod: number) => `lockstep.${run}.pod.${pod}.report`,
  hostAll: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.>`,
  hostCmd: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.cmd`,
  hostData: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.data`,
  hostPing: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.ping`,
  hostState: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.state`,
  hostHeal: (run: string, pod: number, host: number) => `lockstep.${run}.host.${pod}.${host}.heal`,
  progress: (run: string) => `lockstep.${run}.progress`,
} as const;

/** Actor names, also the `sender` of every message they publish. */
export const actorNames = {
  client: 'client' as const,
  pod: (pod: number) => `pod/${pod}`,
  host: (pod: number, host: number) => `host/${pod}/${host}`,
};

export type ParsedSender = { role: 'client' } | { role: 'pod'; pod: number } | { role: 'host'; pod: number; host: number };

export function parseSender(sender: string): ParsedSender | undefined {
  if (sender === 'client') return { role: 'client' };
  let m = /^pod\/(\d{1,6})$/.exec(sender);
  if (m) return { role: 'pod', pod: Number(m[1]) };
  m = /^host\/(\d{1,6})\/(\d{1,6})$/.exec(sender);
  if (m) return { role: 'host', pod: Number(m[1]), host: Number(m[2]) };
  return undefined;
}
