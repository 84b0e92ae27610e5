/**
 * Sweep progress on stderr: checkpoints done of total, heads scored per second, and the
 * time left at that rate. On a terminal one status line is redrawn in place; otherwise
 * (a log file, CI) each finished checkpoint prints one plain line.
 */
import type { WriteStream } from 'node:tty';
import { clock } from '../src/clock.ts';

export interface CheckpointDone {
  run: string;
  path: string;
  step: number | null;
  /** layers × heads of the checkpoint; 0 when it failed. */
  heads: number;
  /** null when scored; the failing stage otherwise. */
  failedAt: string | null;
}

export class Progress {
  private done = 0;
  private failed = 0;
  private heads = 0;
  private readonly startedAt = performance.now();
  private readonly tty: boolean;

  constructor(
    private readonly total: number,
    private readonly stream: NodeJS.WritableStream = process.stderr,
  ) {
    this.tty = (stream as Partial<WriteStream>).isTTY === true;
  }

  /** Printed above the status line on a terminal. */
  note(line: string): void {
    this.stream.write(this.tty ? `\r\x1b[K${line}\n` : `${line}\n`);
  }

  checkpointDone(c: CheckpointDone): void {
    this.done++;
    this.heads += c.heads;
    if (c.failedAt !== null) this.failed++;
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const rate = elapsed > 0 ? this.heads / elapsed : 0;
    const eta = clock((elapsed / this.done) * (this.total - this.done));
    const counts = `[${this.done}/${this.total}]${this.failed > 0 ? ` ${this.failed} failed,` : ''}`;
    const stats = `${rate.toFixed(1)} heads/s, ETA ${eta}`;
    if (this.tty) {
      this.stream.write(`\r\x1b[K${counts} ${stats}`);
    } else {
      const step = c.step === null ? 'step ?' : `step ${c.step}`;
      const what = c.failedAt === null ? 'scored' : `FAILED (${c.failedAt})`;
      this.stream.write(`${counts} ${c.run} ${step} ${what}: ${c.path} · ${stats}\n`);
    }
  }

  /** Ends the status line, so later output starts on a fresh line. */
  finish(): void {
    if (this.tty && this.done > 0) this.stream.write('\n');
  }
}
