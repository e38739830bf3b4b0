import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP fault proxy on the route between two pods' nats-servers: the data-
 * center network (DCN) link. This kernel has no netem, so faults are made
 * here, on the byte stream:
 *
 *   cut()            drop every connection and refuse new ones (a partition)
 *   cutOneWay(dir)   stop forwarding one direction; the other still flows, so
 *                    the servers' pings go unanswered and they drop the route
 *   heal()           forward again (a cut route is dialled again by its server)
 *   latency(ms)      hold every chunk this long in each direction
 *   bandwidth(bps)   at most this many bytes a second in each direction (0: unlimited)
 *
 * Order within a direction is always kept; bytes are never dropped from a
 * live connection (that would corrupt the NATS protocol, which a real
 * network's TCP never does).
 */
export type Direction = 'forward' | 'back';

interface Pipe {
  from: Socket;
  to: Socket;
  dir: Direction;
  queue: { buf: Buffer; readyAt: number }[];
  queued: number;
  nextFree: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export interface DcnStats {
  connections: number;
  bytes: Record<Direction, number>;
  cuts: number;
}

const HIGH_WATER = 8 * 1024 * 1024;

export class DcnProxy {
  private server: Server | undefined;
  private readonly links = new Set<{ a: Socket; b: Socket; pipes: Pipe[] }>();
  private isCut = false;
  private blocked: Direction | undefined;
  private delayMs = 0;
  private rate = 0;
  readonly stats: DcnStats = { connections: 0, bytes: { forward: 0, back: 0 }, cuts: 0 };

  constructor(
    private readonly target: { host: string; port: number },
    private readonly listenPort = 0,
    private readonly host = '127.0.0.1',
  ) {}

  /** Start listening; resolves with the port. */
  async start(): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.listenPort, this.host, () => resolve());
    });
    return (this.server.address() as { port: number }).port;
  }

  get port(): number {
    return (this.server?.address() as { port: number } | null)?.port ?? 0;
  }

  cut(): void {
    this.isCut = true;
    this.stats.cuts++;
    for (const l of this.links) this.close(l);
  }

  cutOneWay(dir: Direction): void {
    this.blocked = dir;
  }

  heal(): void {
    this.isCut = false;
    this.blocked = undefined;
    for (const l of this.links) for (const p of l.pipes) this.pump(p);
  }

  latency(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  bandwidth(bytesPerSecond: number): void {
    this.rate = Math.max(0, bytesPerSecond);
  }

  async stop(): Promise<void> {
    for (const l of this.links) this.close(l);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(a: Socket) {
    if (this.isCut) return a.destroy();
    const b = connect(this.target.port, this.target.host);
    a.setNoDelay(true);
    b.setNoDelay(true);
    const link = { a, b, pipes: [] as Pipe[] };
    link.pipes = [this.pipe(a, b, 'forward'), this.pipe(b, a, 'back')];
    this.links.add(link);
    this.stats.connections++;
    const end = () => this.close(link);
    for (const s of [a, b]) {
      s.on('error', end);
      s.on('close', end);
    }
  }

  private close(l: { a: Socket; b: Socket; pipes: Pipe[] }) {
    if (!this.links.delete(l)) return;
    for (const p of l.pipes) if (p.timer) clearTimeout(p.timer);
    l.a.destroy();
    l.b.destroy();
  }

  private pipe(from: Socket, to: Socket, dir: Direction): Pipe {
    const p: Pipe = { from, to, dir, queue: [], queued: 0, nextFree: 0, timer: undefined };
    from.on('data', (buf: Buffer) => {
      p.queue.push({ buf, readyAt: performance.now() + this.delayMs });
      p.queued += buf.length;
      if (p.queued > HIGH_WATER) from.pause();
      this.pump(p);
    });
    return p;
  }

  /** Send what is due in this direction, in order; wait for the next chunk's time otherwise. */
  private pump(p: Pipe) {
    if (p.timer) return;
    while (p.queue.length > 0) {
      if (this.isCut || this.blocked === p.dir) return;
      const now = performance.now();
      const head = p.queue[0];
      // a link of `rate` bytes/s delivers a chunk its length / rate after the previous one is through
      const at = this.rate > 0 ? Math.max(head.readyAt, p.nextFree) + (head.buf.length / this.rate) * 1000 : head.readyAt;
      if (at > now) {
        p.timer = setTimeout(
          () => {
            p.timer = undefined;
            this.pump(p);
          },
          Math.ceil(at - now),
        );
        return;
      }
      p.queue.shift();
      p.queued -= head.buf.length;
      if (this.rate > 0) p.nextFree = at;
      this.stats.bytes[p.dir] += head.buf.length;
      p.to.write(head.buf);
      if (p.queued <= HIGH_WATER / 2 && p.from.isPaused()) p.from.resume();
    }
  }
}
