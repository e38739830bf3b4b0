import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { identityPermissions, observerPermissions, runLogSubject } from '@lockstep/topology';
import type { NatsUser } from './config.ts';
import { newRouteLogin } from './route.ts';

/** A NATS user name and password. */
export const Login = z
  .object({
    user: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9._-]+$/, 'must be letters, digits, dots, dashes or underscores'),
    password: z.string().min(12, 'must be at least 12 characters').max(256),
  })
  .strict();
export type Login = z.infer<typeof Login>;

/** The name of an identity: the process that connects (client, pod-<p>, host-<p>-<h>, host-<p>-<first>..<last>). */
export const IdentityName = z
  .string()
  .max(40)
  .regex(/^(client|pod-\d{1,6}|host-\d{1,6}-\d{1,6}(\.\.\d{1,6})?)$/, 'must be client, pod-<p>, host-<p>-<h> or host-<p>-<first>..<last>');

/** At most this many identities (a process each); the launcher starts at most 64. */
export const MAX_IDENTITIES = 4096;

/**
 * Who connects to the pods' servers as whom: a login per identity, by its
 * name; and the login of the route between the pods' servers (see route.ts).
 * Written to a run's (or a compose directory's) credentials.json.
 */
export const Credentials = z
  .object({
    users: z
      .record(IdentityName, Login)
      .refine((u) => Object.keys(u).length <= MAX_IDENTITIES, `must have at most ${MAX_IDENTITIES} identities`),
    route: Login,
    /** The observer: it may watch every subject of the run and publish nothing (the status page, tests). Optional for files written before it. */
    observer: Login.optional(),
  })
  .strict();
export type Credentials = z.infer<typeof Credentials>;

/**
 * One NATS identity: a process and the actors it speaks for (`client`,
 * `pod/1`, or the hosts a host process runs). Its user may publish only as
 * those actors (see `identityPermissions`).
 */
export interface Identity {
  name: string;
  actors: string[];
}

const password = () => randomBytes(18).toString('base64url');

/** A fresh login for the observer (user `observer`, a random password). */
export function newObserverLogin(): Login {
  return { user: 'observer', password: password() };
}

/** Fresh credentials: a user per identity, named after it, each with a random password; a route login; and the observer's. */
export function newCredentials(identities: readonly Identity[]): Credentials {
  return Credentials.parse({
    users: Object.fromEntries(identities.map((i) => [i.name, { user: i.name, password: password() }])),
    route: newRouteLogin(),
    observer: newObserverLogin(),
  });
}

/** The identities `c` has no login for. */
export function missingLogins(c: Credentials, identities: readonly Identity[]): string[] {
  return identities.filter((i) => !Object.hasOwn(c.users, i.name)).map((i) => i.name);
}

/**
 * The users each server knows, with what each may publish and subscribe to:
 * the pods' servers take every identity, each with exactly the permissions of
 * the actors it speaks for, and the observer (`observer`, else the
 * credentials' own, when either is given: it may watch the run's subjects and
 * publish nothing); the run log's server only the client's identity.
 */
export function natsUsers(
  runId: string,
  c: Credentials,
  identities: readonly Identity[],
  observer?: Login,
): { cluster: NatsUser[]; runLog: NatsUser[] } {
  const missing = missingLogins(c, identities);
  if (missing.length > 0) throw new RangeError(`natsUsers: no login for ${missing.join(', ')}`);
  const login = (i: Identity) => ({ user: c.users[i.name].user, password: c.users[i.name].password });
  const cluster: NatsUser[] = identities.map((i) => ({ ...login(i), ...identityPermissions(runId, i.actors) }));
  const watcher = observer ?? c.observer;
  if (watcher) cluster.push({ ...watcher, ...observerPermissions(runId) });
  const runLog = identities
    .filter((i) => i.actors.includes('client'))
    .map((i) => ({ ...login(i), publish: ['$JS.API.>', runLogSubject(runId), '_INBOX.>'], subscribe: ['_INBOX.>'] }));
  return { cluster, runLog };
}
