import { z } from 'zod';
import { EventActor, FailureReport, Hash } from '@lockstep/topology';

/**
 * What the status page's `/status` answers (and its `status` server-sent
 * event carries): the run as the launcher sees it now. Times in ms; a
 * heartbeat age is null until the actor's first heartbeat.
 */
const count = z.number().int().min(0);
const ageMs = z.number().min(0).nullable();

/** A process of the run: its name, pid, restarts so far, and whether it runs, is being restarted or has exited. */
export const ProcessStatus = z.object({
  name: z.string(),
  pid: count.nullable(),
  restarts: count,
  state: z.enum(['starting', 'running', 'restarting', 'exited']),
});

/** A pod scheduler: its phase, step and attempt (from its heartbeats), whether a step can run, the hosts it misses. */
export const PodStatus = z.object({
  id: EventActor,
  pod: count,
  phase: z.string().nullable(),
  step: count.nullable(),
  attempt: count.nullable(),
  heartbeatAgeMs: ageMs,
  ready: z.boolean().nullable(),
  silentHosts: z.array(count),
  process: ProcessStatus,
});

/** A host: its phase, step and attempt (from its heartbeats), its process, and its last heal (from whom, bytes, ms). */
export const HostStatus = z.object({
  id: EventActor,
  pod: count,
  host: count,
  phase: z.string().nullable(),
  step: count.nullable(),
  attempt: count.nullable(),
  heartbeatAgeMs: ageMs,
  process: ProcessStatus,
  heals: count,
  lastHeal: z.object({ from: EventActor, bytes: count, ms: z.number().min(0), step: z.number().int() }).nullable(),
});

/** One phase of one host in the timeline of a step: start (ms after the step's first slice) and duration. */
export const TimelineSlice = z.object({ host: EventActor, phase: z.string(), startMs: z.number(), durMs: z.number().min(0) });

/** A committed step, for the chart: its loss, wall time (ms) and attempt. */
export const StepPoint = z.object({ step: count, attempt: count, loss: z.number(), ms: z.number().min(0) });

/** A line of the run's notable events: when (epoch ms), who, what. */
export const EventLine = z.object({ at: z.number(), actor: z.string(), kind: z.string(), text: z.string() });

export const LiveStatus = z.object({
  runId: z.string(),
  topology: z.string(),
  pods: count,
  hostsPerPod: count,
  /** Steps the run is asked for, steps committed so far. */
  steps: count,
  committed: count,
  state: z.enum(['starting', 'running', 'finished', 'failed']),
  message: z.string().nullable(),
  lastStep: count.nullable(),
  paramsHash: Hash.nullable(),
  podHashes: z.array(Hash),
  podsAgree: z.boolean().nullable(),
  podStatus: z.array(PodStatus),
  hosts: z.array(HostStatus),
  /** The phases of the newest step whose slices are in, host by host. */
  timeline: z.object({ step: count, attempt: count, slices: z.array(TimelineSlice) }).nullable(),
  history: z.array(StepPoint),
  retries: z.array(FailureReport),
  /** The DCN link: the route between pod 0's server and the others (nats-server's /routez), bytes/s over the last poll. */
  dcn: z
    .object({ inBytes: count, outBytes: count, inMsgs: count, outMsgs: count, bytesPerSecond: z.number().min(0).nullable() })
    .nullable(),
  events: z.array(EventLine),
  /** Whether the page may kill hosts (the launcher's supervisor is there). */
  canKill: z.boolean(),
});
export type LiveStatus = z.infer<typeof LiveStatus>;
export type HostStatus = z.infer<typeof HostStatus>;
export type PodStatus = z.infer<typeof PodStatus>;
export type ProcessStatus = z.infer<typeof ProcessStatus>;
export type EventLine = z.infer<typeof EventLine>;
