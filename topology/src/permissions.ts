import { parseSender, processKey, subjects } from './subjects.ts';
import { channelsIn, channelsOf, receivePattern, sendPattern, treePattern, wireTrees, type WireChannel } from './wire.ts';

/** What a NATS user may publish on and subscribe to (NATS subject patterns). */
export interface Permissions {
  publish: string[];
  subscribe: string[];
}

/**
 * What one actor (`client`, `pod/1`, `host/0/1`) may say and hear in run
 * `run`, derived from the wire table: it may publish on the channels its role
 * sends on, with its own sender tokens (`sendPattern`: host/0/1 publishes data
 * only on `host.*.*.data.0.1`, reports only on `pod.0.report.1`), and
 * subscribe to its own subjects on the channels its role receives on
 * (`receivePattern`; a host, which receives on all of its subjects, to its
 * tree `host.0.1.>`). Nothing else: no actor uses request/reply on the pods'
 * servers (`_INBOX.>`); the client reaches the run log's JetStream API on the
 * run log's own server, as its own user there (see infra's natsUsers). The
 * server refuses the rest: a host cannot publish a commit, nor anything as
 * another host.
 */
export function actorPermissions(run: string, actor: string): Permissions {
  const s = parseSender(actor);
  if (!s) throw new RangeError(`actorPermissions: ${JSON.stringify(actor)} is not an actor name (client, pod/<p>, host/<p>/<h>)`);
  const defined = (xs: (string | undefined)[]) => xs.filter((x): x is string => x !== undefined);
  const publish = defined(channelsOf(s.role, 'sends').map((c) => sendPattern(c, run, actor)));
  const receives = channelsOf(s.role, 'receives');
  const trees = (Object.keys(wireTrees) as (keyof typeof wireTrees)[]).filter((t) => channelsIn(t).every((c) => receives.includes(c)));
  const treeOf = (c: WireChannel) => trees.find((t) => channelsIn(t).includes(c));
  const subscribe = defined(receives.map((c) => (treeOf(c) ? treePattern(treeOf(c)!, run, actor) : receivePattern(c, run, actor))));
  return { publish: uniq(publish), subscribe: uniq(subscribe) };
}

/**
 * What one connection that speaks for several actors (a host process runs several hosts) may: what each of them may,
 * and, for a pod's process (its scheduler, or a host process), batch frames to the other processes of its pod under
 * its own key (`batch.<p>.*.<key>`) and from them to itself (`batch.<p>.<key>.*`): the receiving process takes from
 * such a frame only the messages whose subjects name one of the sending process's actors as their sender.
 */
export function identityPermissions(run: string, actors: readonly string[]): Permissions {
  const each = actors.map((a) => actorPermissions(run, a));
  const k = processKey(actors);
  const batchPub = k ? [subjects.batch(run, k.pod, '*', k.key)] : [];
  const batchSub = k ? [subjects.batch(run, k.pod, k.key, '*')] : [];
  return {
    publish: uniq([...each.flatMap((p) => p.publish), ...batchPub]),
    subscribe: uniq([...each.flatMap((p) => p.subscribe), ...batchSub]),
  };
}

/** A user that watches a run (tests, dashboards): it may subscribe to the run's subjects and publish nothing but replies. */
export function observerPermissions(run: string): Permissions {
  return { publish: ['_INBOX.>'], subscribe: [`${subjects.root(run)}.>`, '_INBOX.>'] };
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}
