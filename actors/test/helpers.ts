import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActor, fromCallback, fromPromise, sendTo, setup } from 'xstate';
import { pino } from 'pino';
import { runLogAppend, type RunLogRecord } from '@lockstep/topology';
import {
  hostCompute,
  systemClock,
  type CheckpointCommand,
  type CheckpointEvent,
  type ClockTick,
  type CommittedState,
  type HostContext,
  type HostDiskCommand,
  type HostEvent,
  type RunLogCommand,
  type RunLogEvent,
  type OneWireCommand,
  type WireCommand,
  type WireEvent,
} from '../src/index.ts';

export const quietLog = pino({ level: 'silent' });

/** The time an event from the edge carries in a test: now, on the clock a real run uses (epoch ms). */
export const now = () => systemClock.now();

/**
 * A `clock` actor the test drives: it never ticks by itself; `tick(at)` sends
 * every machine that invoked it a `clock.tick` stamped `at` (default: now).
 */
export function manualClock() {
  const machines = new Set<(tick: ClockTick) => void>();
  const actor = fromCallback<{ type: 'noop' }, { everyMs: number }>(({ sendBack }) => {
    const deliver = (tick: ClockTick) => sendBack(tick);
    machines.add(deliver);
    return () => machines.delete(deliver);
  });
  return {
    actor,
    tick: (at = now()) => {
      for (const deliver of machines) deliver({ type: 'clock.tick', at });
    },
  };
}

/** A host's disk for machine tests: keeps in memory what it is asked to write. */
export function memoryDisk(writes: HostDiskCommand[] = []) {
  return fromCallback<HostDiskCommand>(({ receive }) => {
    receive((cmd) => writes.push(cmd));
  });
}

/** A host's checkpoint loader for tests that restore nothing: a restore fails, naming why. */
export const noCheckpointToLoad = fromPromise<CommittedState, { checkpoint: number }>(async ({ input }) => {
  throw new Error(`no checkpoint ${input.checkpoint} in this test`);
});

/**
 * Everything a host machine must be given, for a machine test: `wire`, the
 * real compute on the system clock, a clock that ticks only when the test
 * says (unless one is given), a disk in memory and no checkpoints.
 */
export function hostActors(
  wire: ReturnType<typeof recordingWire>,
  o: { clock?: ReturnType<typeof manualClock>['actor']; disk?: ReturnType<typeof memoryDisk> } = {},
) {
  return {
    wire,
    clock: o.clock ?? manualClock().actor,
    disk: o.disk ?? memoryDisk(),
    loadCheckpoint: noCheckpointToLoad,
    ...hostCompute(systemClock),
  };
}

/** A wire for machine tests without a network: records what the machine sends and hands it to `route`. */
export function recordingWire(sent: OneWireCommand[], route?: (cmd: OneWireCommand) => void) {
  const each = (cmd: WireCommand): void => {
    if (cmd.type === 'wire.sendMany') {
      for (const c of cmd.commands) each(c);
      return;
    }
    sent.push(cmd);
    route?.(cmd);
  };
  return fromCallback<WireCommand>(({ receive }) => receive(each));
}

/**
 * A run log for machine tests without a server: it keeps records in memory and,
 * like the JetStream log, refuses a step unless exactly the steps before it are logged.
 */
export function memoryRunLog(records: RunLogRecord[]) {
  return fromCallback<RunLogCommand>(({ receive, sendBack }) => {
    receive((cmd) => {
      if (cmd.type === 'log.read') return sendBack({ type: 'log.record', step: cmd.step, record: records[cmd.step] } satisfies RunLogEvent);
      const step = cmd.record.step;
      const d = runLogAppend(records, cmd.record);
      if (d.kind === 'conflict') return sendBack({ type: 'log.failed', step, problem: 'conflict', detail: d.reason } satisfies RunLogEvent);
      if (d.kind === 'appended') records.push({ ...cmd.record, at: new Date(now()).toISOString() }); // stamped here, like the JetStream log's actor
      sendBack({ type: 'log.appended', step } satisfies RunLogEvent);
    });
  });
}

/**
 * A checkpoint store with nothing in it: a restore goes back to the initial
 * state. Manifests it is asked to write are kept in `manifests` (and never found).
 */
export function noCheckpoints(manifests: Extract<CheckpointCommand, { type: 'ckpt.writeManifest' }>['manifest'][] = []) {
  return fromCallback<CheckpointCommand>(({ receive, sendBack }) => {
    receive((cmd) => {
      if (cmd.type === 'ckpt.writeManifest') manifests.push(cmd.manifest);
      else sendBack({ type: 'ckpt.none', skipped: [] } satisfies CheckpointEvent);
    });
  });
}

export function controlSent(sent: OneWireCommand[], kind: string) {
  return sent.flatMap((c) => (c.type === 'wire.send' && c.message.kind === kind ? [c.message] : []));
}

/** A real nats-server on a free port, the way nats.js's own tests start one. */
export async function startNatsServer(
  args: string[] = [],
): Promise<{ url: string; port: number; proc: ChildProcess; stop: () => Promise<void> }> {
  const bin =
    ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'].find((p) => {
      try {
        readFileSync(p, { flag: 'r' }).length;
        return true;
      } catch {
        return false;
      }
    }) ?? 'nats-server';
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-nats-'));
  const proc = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir, ...args], { stdio: 'ignore' });
  const until = Date.now() + 10_000;
  let port = 0;
  while (!port) {
    if (Date.now() > until) throw new Error('nats-server did not start within 10 s');
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}`);
    const f = readdirSync(dir).find((n) => n.endsWith('.ports'));
    if (f) {
      try {
        const ports = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nats: string[] };
        port = Number(new URL(ports.nats[0]).port);
      } catch {
        // file still being written
      }
    }
    if (!port) await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/**
 * Answer a started host machine's start-up pings as host h of every other pod would (a pong from each), so it
 * leaves `joining`: idle, or healing when restarted. Machine tests without a network use it; over a real or
 * simulated network the peers answer themselves.
 */
export function joined<A extends { send: (e: HostEvent) => void; getSnapshot: () => { context: HostContext } }>(a: A, at = now()): A {
  const { pod, host, runId, topology } = a.getSnapshot().context;
  for (let q = 0; q < topology.pods; q++) {
    if (q === pod) continue;
    const sender = `host/${q}/${host}`;
    a.send({ type: 'pong', msg: { v: 1, runId, step: 0, attempt: 0, sender, msgId: `${sender}/pong/test`, kind: 'pong' }, at });
  }
  return a;
}

/**
 * A stand-in for a host around an edge actor `wire`: what the edge hands it is recorded in `received`; an event
 * marked `via` (a WireCommand) goes out through the edge.
 */
export function edgeHost(wire: ReturnType<typeof fromCallback<WireCommand>>, received: WireEvent[]) {
  return createActor(
    setup({ types: { events: {} as WireEvent | (WireCommand & { via: true }) }, actors: { wire } }).createMachine({
      invoke: { id: 'wire', src: 'wire' },
      on: {
        '*': [
          { guard: ({ event }) => 'via' in event, actions: sendTo('wire', ({ event }) => event as WireCommand) },
          { actions: ({ event }) => received.push(event as WireEvent) },
        ],
      },
    }),
  ).start();
}

/** Poll `cond` every 10 ms until it holds or `ms` pass (the assertions after it say what was missing). */
export async function until(cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}
