import { randomBytes } from 'node:crypto';

/**
 * The login of the route between the pods' nats-servers (the DCN link): each
 * pod's server requires it at its route port and presents it at the others'.
 * Without it, anyone reaching a route port could join the cluster as a server
 * and read or inject any message of the run. One per run, made with the
 * roles' credentials.
 */
export interface RouteLogin {
  user: string;
  password: string;
}

/** A fresh route login: user `route`, a random password (URL-safe: it goes into the route URLs). */
export function newRouteLogin(): RouteLogin {
  return { user: 'route', password: randomBytes(18).toString('base64url') };
}

/**
 * The URL a server dials another's route port by: nats-route://host:port, with
 * the login as its user info when there is one (nats-server presents the
 * login of an explicit route only from its URL).
 */
export function routeUrl(host: string, port: number, login?: RouteLogin): string {
  const auth = login ? `${encodeURIComponent(login.user)}:${encodeURIComponent(login.password)}@` : '';
  return `nats-route://${auth}${host}:${port}`;
}
