import { subjects } from './subjects.ts';
import { channelPattern, channelsIn, channelsOf, treePattern, wireTrees, type Role, type WireChannel } from './wire.ts';

/**
 * Who may say what, as NATS publish/subscribe permissions per role, derived
 * from the wire table: a role may publish on the channels it sends on and
 * subscribe to those it receives on (a host, which receives on all of its
 * subjects, to `host.*.*.>`). The launcher gives each role its own user
 * with these; the server refuses the rest (a host cannot publish a commit or a
 * dispatch: only a pod may, on host.<p>.<h>.cmd). Every role may also use
 * `_INBOX.>` (request/reply: the run log's JetStream API), and
 * the client `$JS.API.>`.
 */
export function rolePermissions(run: string): Record<Role, { publish: string[]; subscribe: string[] }> {
  const of = (role: Role, way: 'sends' | 'receives', extra: string[]) => [...new Set([...patterns(channelsOf(role, way), run), ...extra])];
  const perms = (role: Role, publishToo: string[] = []) => ({
    publish: of(role, 'sends', ['_INBOX.>', ...publishToo]),
    subscribe: of(role, 'receives', ['_INBOX.>']),
  });
  return { client: perms('client', ['$JS.API.>']), pod: perms('pod'), host: perms('host') };
}

/** A pattern per channel, in order; channels that fill a whole tree (a host's subjects) become the tree's one pattern. */
function patterns(channels: WireChannel[], run: string): string[] {
  const whole = (Object.keys(wireTrees) as (keyof typeof wireTrees)[]).filter((t) => channelsIn(t).every((c) => channels.includes(c)));
  return channels.map((c) => {
    const tree = whole.find((t) => channelsIn(t).includes(c));
    return tree ? treePattern(tree, run) : channelPattern(c, run);
  });
}

/** A user that watches a run (tests, dashboards): it may subscribe to the run's subjects and publish nothing but replies. */
export function observerPermissions(run: string): { publish: string[]; subscribe: string[] } {
  return { publish: ['_INBOX.>'], subscribe: [`${subjects.root(run)}.>`, '_INBOX.>'] };
}
