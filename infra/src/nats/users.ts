import { randomBytes } from 'node:crypto';
import { observerPermissions, rolePermissions, runLogSubject, type Role } from '@lockstep/topology';
import type { NatsUser } from './config.ts';
import { newRouteLogin, type RouteLogin } from './route.ts';

/**
 * One NATS user per role, and the login of the route between the pods'
 * servers; the launcher, the compose file and the testcontainers cluster all
 * make them here.
 */
export type Credentials = Record<Role, { user: string; password: string }> & { route: RouteLogin };

/** Fresh credentials: a user per role, each with a random password, and a route login. */
export function newCredentials(): Credentials {
  const pw = () => randomBytes(18).toString('base64url');
  return {
    client: { user: 'client', password: pw() },
    pod: { user: 'pod', password: pw() },
    host: { user: 'host', password: pw() },
    route: newRouteLogin(),
  };
}

/**
 * The users each server knows, with what each may publish and subscribe to:
 * the pods' servers take all three roles (and an observer, when one is given:
 * it may watch the run's subjects and publish nothing); the run log's server
 * only the client.
 */
export function natsUsers(
  runId: string,
  c: Credentials,
  observer?: { user: string; password: string },
): { cluster: NatsUser[]; runLog: NatsUser[] } {
  const perms = rolePermissions(runId);
  const cluster: NatsUser[] = (['client', 'pod', 'host'] as const).map((r) => ({ user: c[r].user, password: c[r].password, ...perms[r] }));
  if (observer) cluster.push({ ...observer, ...observerPermissions(runId) });
  const runLog = [
    { user: c.client.user, password: c.client.password, publish: ['$JS.API.>', runLogSubject(runId), '_INBOX.>'], subscribe: ['_INBOX.>'] },
  ];
  return { cluster, runLog };
}
