import { subjects } from './subjects.ts';

/**
 * Who may say what, as NATS publish/subscribe permissions per role. The
 * launcher gives each role its own user with these; the server refuses the
 * rest (a host cannot publish a commit or a dispatch: only a pod may, on
 * host.<p>.<h>.cmd). `_INBOX.>` carries request/reply (readiness pings, the
 * run log's JetStream API).
 */
export type Role = 'client' | 'pod' | 'host';

export function rolePermissions(run: string): Record<Role, { publish: string[]; subscribe: string[] }> {
  const r = subjects.root(run);
  return {
    client: {
      publish: [`${r}.pod.*.cmd`, `${r}.pod.*.ping`, subjects.progress(run), '_INBOX.>', '$JS.API.>'],
      subscribe: [subjects.clientReport(run), '_INBOX.>'],
    },
    pod: {
      publish: [subjects.clientReport(run), `${r}.host.*.*.cmd`, `${r}.host.*.*.ping`, '_INBOX.>'],
      subscribe: [`${r}.pod.*.cmd`, `${r}.pod.*.report`, `${r}.pod.*.ping`, '_INBOX.>'],
    },
    host: {
      publish: [`${r}.pod.*.report`, `${r}.host.*.*.data`, `${r}.host.*.*.ping`, `${r}.host.*.*.state`, `${r}.host.*.*.heal`, '_INBOX.>'],
      subscribe: [`${r}.host.*.*.>`, '_INBOX.>'],
    },
  };
}

/** A user that watches a run (tests, dashboards): it may subscribe to the run's subjects and publish nothing but replies. */
export function observerPermissions(run: string): { publish: string[]; subscribe: string[] } {
  return { publish: ['_INBOX.>'], subscribe: [`${subjects.root(run)}.>`, '_INBOX.>'] };
}
