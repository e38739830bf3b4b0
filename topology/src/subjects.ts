/**
 * Every NATS subject lockstep uses, in one place. `run` is the run id. A
 * subject ends with its sender's tokens wherever the receiver's own tokens do
 * not already say who sent it: each actor may publish only with its own
 * tokens (the server refuses the rest), and receivers subscribe with `*` in
 * their place.
 *
 *   lockstep.<run>.client.report.<sp>           pod sp -> client (pod.prepared, pod.committed, ...)
 *   lockstep.<run>.pod.<p>.cmd                  client -> pod p (step.dispatch, step.commit, ...)
 *   lockstep.<run>.pod.<p>.report.<sh>          host sh of pod p -> pod p (host.heartbeat, host.prepared, ...)
 *   lockstep.<run>.host.<p>.<h>.cmd             pod p -> its host h (host.dispatch, host.commit, ...)
 *   lockstep.<run>.host.<p>.<h>.data.<sp>.<sh>  tensor chunks from host sh of pod sp for host h of pod p (in-pod and cross-pod), and tensor.request asking h for one again
 *   lockstep.<run>.host.<p>.<h>.ping.<sp>       start-up ping and pong from host h of pod sp to host h of pod p
 *   lockstep.<run>.host.<p>.<h>.state.<sp>      state.request from host h of pod sp (healing)
 *   lockstep.<run>.host.<p>.<h>.expect.<sp>     heal.expect from pod sp (its host h heals: it may be served)
 *   lockstep.<run>.host.<p>.<h>.heal.<sp>       the committed state host h of pod sp sends back to a healing host h
 *   lockstep.<run>.progress                     client -> observers: one message per committed step
 *   lockstep.<run>.batch.<p>.<to>.<from>        a batch frame between two processes of pod p: the in-pod messages one
 *                                               process sends another in one turn of its event loop (see processKey)
 *
 * Each direction has its own subject so that permissions can say who may
 * publish what (a host can publish reports and data, never a command; host
 * 0/0 only as itself).
 */

/** A token of a subject: an index, or `*` (any) in a subscription. */
export type SubjectToken = number | '*';

/** Any sender: what a receiver subscribes with in place of a sender token. */
export const ANY = '*' as const;

export const subjects = {
  root: (run: string) => `lockstep.${run}`,
  clientReport: (run: string, fromPod: SubjectToken) => `lockstep.${run}.client.report.${fromPod}`,
  podCmd: (run: string, pod: SubjectToken) => `lockstep.${run}.pod.${pod}.cmd`,
  podReport: (run: string, pod: SubjectToken, fromHost: SubjectToken) => `lockstep.${run}.pod.${pod}.report.${fromHost}`,
  hostAll: (run: string, pod: SubjectToken, host: SubjectToken) => `lockstep.${run}.host.${pod}.${host}.>`,
  hostCmd: (run: string, pod: SubjectToken, host: SubjectToken) => `lockstep.${run}.host.${pod}.${host}.cmd`,
  hostData: (run: string, pod: SubjectToken, host: SubjectToken, fromPod: SubjectToken, fromHost: SubjectToken) =>
    `lockstep.${run}.host.${pod}.${host}.data.${fromPod}.${fromHost}`,
  hostPing: (run: string, pod: SubjectToken, host: SubjectToken, fromPod: SubjectToken) =>
    `lockstep.${run}.host.${pod}.${host}.ping.${fromPod}`,
  hostState: (run: string, pod: SubjectToken, host: SubjectToken, fromPod: SubjectToken) =>
    `lockstep.${run}.host.${pod}.${host}.state.${fromPod}`,
  hostExpect: (run: string, pod: SubjectToken, host: SubjectToken, fromPod: SubjectToken) =>
    `lockstep.${run}.host.${pod}.${host}.expect.${fromPod}`,
  hostHeal: (run: string, pod: SubjectToken, host: SubjectToken, fromPod: SubjectToken) =>
    `lockstep.${run}.host.${pod}.${host}.heal.${fromPod}`,
  progress: (run: string) => `lockstep.${run}.progress`,
  /** A batch frame from process `from` of pod `pod` to its process `to` (keys from `processKey`). */
  batch: (run: string, pod: SubjectToken, to: string, from: string) => `lockstep.${run}.batch.${pod}.${to}.${from}`,
} as const;

/**
 * The key of the process that runs `actors` among its pod's processes, as batch subjects name it: `pod` for the pod
 * scheduler's, `h<first>` for a host process (its lowest host index); undefined for the client, or actors of more
 * than one pod (such a process sends no batch frames).
 */
export function processKey(actors: readonly string[]): { pod: number; key: string } | undefined {
  const parsed = actors.map(parseSender);
  const first = parsed[0];
  if (!first || first.role === 'client' || parsed.some((a) => !a || a.role === 'client' || a.pod !== first.pod)) return undefined;
  if (parsed.length === 1 && first.role === 'pod') return { pod: first.pod, key: 'pod' };
  if (parsed.some((a) => a?.role !== 'host')) return undefined;
  return { pod: first.pod, key: `h${Math.min(...parsed.map((a) => (a as { host: number }).host))}` };
}

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
