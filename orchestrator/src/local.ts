import { join } from 'node:path';
import type { ClusterPlan } from '@lockstep/infra';
import type { Role } from '@lockstep/topology';

/** A nats-server the launcher starts: its config file (and what goes in it) and its log. */
export interface LocalServer {
  name: string;
  /** The pod it serves; -1 for the run log's server. */
  pod: number;
  url: string;
  port: number;
  config: { file: string; text: string };
  logFile: string;
}

/** A `lockstep <role>` process the launcher starts; its log is <run dir>/logs/<name>.log. */
export interface LocalRole {
  name: string;
  role: Role;
  args: string[];
  env: Record<string, string>;
  logFile: string;
}

/**
 * The launcher's rendering of a cluster plan (made with a `local` placement):
 * the nats-servers with their config files in the run directory, and the role
 * processes, each logging under <run dir>/logs. Pure: starting them is the
 * launcher's.
 */
export function localRendering(plan: ClusterPlan, runDir: string): { servers: LocalServer[]; roles: LocalRole[] } {
  const logDir = join(runDir, 'logs');
  const servers = plan.servers.map((s) => {
    const stem = s.pod === null ? 'nats-runlog' : `nats-pod-${s.pod}`;
    return {
      name: s.name,
      pod: s.pod ?? -1,
      url: s.url,
      port: s.port,
      config: { file: join(runDir, `${stem}.conf`), text: s.config },
      logFile: join(logDir, `${stem}.log`),
    };
  });
  const roles = plan.processes.map((p) => ({
    name: p.name,
    role: p.role,
    args: p.args,
    env: p.env,
    logFile: join(logDir, `${p.name}.log`),
  }));
  return { servers, roles };
}
