/**
 * Progress of a long run: a redrawn bar on a terminal, plain lines elsewhere
 * (CI logs, pipes), always on stderr so stdout stays for results.
 */
export class Progress {
  private readonly tty: boolean;
  private lastPlain = -1;
  private lastPlainAt = 0;
  private first: { at: number; done: number } | undefined;

  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
    /** What `done` counts, for the rate: `steps` gives "steps/s". */
    private readonly unit = 'steps',
  ) {
    this.tty = Boolean(out.isTTY);
  }

  note(text: string): void {
    if (!this.enabled) return;
    if (this.tty) this.out.write(`\r\x1b[2K${text}\n`);
    else this.out.write(`${text}\n`);
  }

  update(done: number, detail: string): void {
    if (!this.enabled) return;
    const now = performance.now();
    this.first ??= { at: now, done };
    const rate = now > this.first.at ? (done - this.first.done) / ((now - this.first.at) / 1000) : 0;
    if (this.tty) {
      const width = 30;
      const filled = Math.round((done / this.total) * width);
      this.out.write(
        `\r\x1b[2K${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} ${detail} ${rate.toFixed(1)} ${this.unit}/s`,
      );
      if (done === this.total) this.out.write('\n');
      return;
    }
    // plain lines: every 10% of the run, and at least every 5 s
    const every = Math.max(1, Math.floor(this.total / 10));
    if (done === this.total || done - this.lastPlain >= every || now - this.lastPlainAt >= 5000) {
      this.lastPlain = done;
      this.lastPlainAt = now;
      this.out.write(`${this.label} ${done}/${this.total} ${detail} ${rate.toFixed(1)} ${this.unit}/s\n`);
    }
  }
}

/** A loss for a human summary (6 significant digits), or '-' when there is none. */
export function fmtLoss(x: number | null | undefined): string {
  return x === null || x === undefined ? '-' : x.toPrecision(6);
}

/** A two-column table for a human summary. */
export function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}
