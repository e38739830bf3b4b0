import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { hostPhases, type RunEvent } from '@lockstep/topology';

/** Buckets of step and phase times, seconds: 1 ms to 60 s. */
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The run's metrics in the Prometheus text format (prom-client, a registry of
 * its own), updated from the run's events:
 *
 *   lockstep_steps_committed_total                    counter    committed steps (a replay after a restore not counted)
 *   lockstep_step_seconds                             histogram  a committed step's wall time at the client
 *   lockstep_phase_seconds{phase}                     histogram  the slowest host's time in each phase of a committed step
 *   lockstep_retried_attempts_total{reason}           counter    attempts that failed and were run again, by the failure's kind
 *   lockstep_process_restarts_total{process}          counter    processes the supervisor restarted
 *   lockstep_rejected_messages_total{reason}          counter    messages the actors rejected, by reason
 *   lockstep_duplicate_messages_total                 counter    repeated messages recognised and ignored (counted at the run's end, when the processes report them)
 *   lockstep_heals_total                              counter    hosts healed from their cross-pod peer
 *   lockstep_loss                                     gauge      the last committed step's loss
 *   lockstep_pods_agree                               gauge      1 while every pod reported the same parameter hash at the last commit, else 0
 *   lockstep_dcn_route_bytes_total{direction}         counter    bytes across pod 0's routes (nats-server /routez), in and out
 */
export class RunMetrics {
  readonly registry = new Registry();
  private readonly committed = new Counter({
    name: 'lockstep_steps_committed_total',
    help: 'Steps committed (both pods agreed and the run log holds them)',
    registers: [this.registry],
  });
  private readonly stepSeconds = new Histogram({
    name: 'lockstep_step_seconds',
    help: "A committed step's wall time at the client",
    buckets: SECONDS,
    registers: [this.registry],
  });
  private readonly phaseSeconds = new Histogram({
    name: 'lockstep_phase_seconds',
    help: "The slowest host's time in a phase of a committed step",
    labelNames: ['phase'],
    buckets: SECONDS,
    registers: [this.registry],
  });
  private readonly retried = new Counter({
    name: 'lockstep_retried_attempts_total',
    help: 'Step attempts that failed and were run again, by the kind of failure',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly restarts = new Counter({
    name: 'lockstep_process_restarts_total',
    help: 'Processes of the run restarted by the supervisor after they exited',
    labelNames: ['process'],
    registers: [this.registry],
  });
  private readonly rejected = new Counter({
    name: 'lockstep_rejected_messages_total',
    help: 'Messages the actors rejected, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly duplicates = new Counter({
    name: 'lockstep_duplicate_messages_total',
    help: 'Repeated messages recognised by their id and ignored (reported by the processes when they stop)',
    registers: [this.registry],
  });
  private readonly heals = new Counter({
    name: 'lockstep_heals_total',
    help: 'Hosts healed from their cross-pod peer',
    registers: [this.registry],
  });
  private readonly loss = new Gauge({ name: 'lockstep_loss', help: "The last committed step's loss", registers: [this.registry] });
  private readonly agree = new Gauge({
    name: 'lockstep_pods_agree',
    help: 'Whether every pod reported the same parameter hash at the last commit (1) or not (0)',
    registers: [this.registry],
  });
  private readonly routeBytes = new Counter({
    name: 'lockstep_dcn_route_bytes_total',
    help: "Bytes across pod 0's routes to the other pods' servers (the DCN), from nats-server's /routez",
    labelNames: ['direction'],
    registers: [this.registry],
  });
  private routeSeen = { in: 0, out: 0 };

  /** Count one run event. */
  onEvent(e: RunEvent): void {
    if (e.kind === 'step' && !e.replayed) {
      this.committed.inc();
      this.stepSeconds.observe(e.ms / 1000);
      for (const p of hostPhases) if (e.phaseMs[p] !== undefined) this.phaseSeconds.observe({ phase: p }, e.phaseMs[p]! / 1000);
      this.loss.set(e.loss);
      this.agree.set(e.podsAgree ? 1 : 0);
    } else if (e.kind === 'retry') this.retried.inc({ reason: e.failure.kind });
    else if (e.kind === 'start' && e.restart > 0) this.restarts.inc({ process: e.actor });
    else if (e.kind === 'rejected') for (const [reason, n] of Object.entries(e.counts)) this.rejected.inc({ reason }, n);
    else if (e.kind === 'heal') this.heals.inc();
  }

  /** The duplicates the run's processes reported when they stopped (the run's summary). */
  onDuplicates(n: number): void {
    if (n > 0) this.duplicates.inc(n);
  }

  /** Pod 0's route counters (cumulative, from /routez): the counter goes up by what is new (a restarted server starts again from 0). */
  onRoutes(c: { inBytes: number; outBytes: number }): void {
    const dIn = c.inBytes >= this.routeSeen.in ? c.inBytes - this.routeSeen.in : c.inBytes;
    const dOut = c.outBytes >= this.routeSeen.out ? c.outBytes - this.routeSeen.out : c.outBytes;
    if (dIn > 0) this.routeBytes.inc({ direction: 'in' }, dIn);
    if (dOut > 0) this.routeBytes.inc({ direction: 'out' }, dOut);
    this.routeSeen = { in: c.inBytes, out: c.outBytes };
  }

  /** The text `/metrics` answers, and its content type. */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
