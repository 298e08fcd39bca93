/**
 * Progress on stderr. On a terminal: an ora spinner with count, rate and
 * ETA. Elsewhere (a CI log, a pipe, or CI=true): plain lines, at most one
 * every few seconds, no escape codes. A summary line at the end either way.
 */
import type { Ora } from 'ora';
import { importModule } from '../util/import-module.cjs';

export interface ProgressCounts {
  done: number;
  errors: number;
  total: number;
}

export interface Progress {
  start(total: number): Promise<void>;
  update(counts: ProgressCounts): void;
  /** Prints a line without breaking the spinner. */
  log(line: string): void;
  finish(summary: string): void;
  /** Stops without a summary (the run failed): a spinner must not keep spinning, or keep the process alive. */
  abort(): void;
}

export interface ProgressOptions {
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
  env?: NodeJS.ProcessEnv;
  /** Minimum time between plain lines. */
  intervalMs?: number;
  label?: string;
}

export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const env = options.env ?? process.env;
  if (options.quiet) return new SilentProgress(stream);
  // Plain lines too on TERM=dumb (no cursor movement) and on a terminal of
  // zero columns (a pty a CI runner or `script` opened without a size): ora
  // divides by the width there and loops forever clearing lines.
  const interactive = stream.isTTY === true && !isCi(env) && env['TERM'] !== 'dumb' && (stream.columns ?? 0) > 0;
  return interactive ? new SpinnerProgress(stream, options.label ?? 'images') : new LineProgress(stream, options.intervalMs ?? 5000, options.label ?? 'images');
}

export function isCi(env: NodeJS.ProcessEnv): boolean {
  const ci = env['CI'];
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

class Rate {
  private readonly started = performance.now();

  describe({ done, errors, total }: ProgressCounts, label: string): string {
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const remaining = rate > 0 ? (total - done) / rate : Number.NaN;
    const parts = [`${done}/${total} ${label}`];
    if (done > 0) parts.push(`${rate.toFixed(rate < 10 ? 2 : 1)}/s`);
    if (done > 0 && done < total) parts.push(`ETA ${formatDuration(remaining)}`);
    if (errors > 0) parts.push(`${errors} error${errors === 1 ? '' : 's'}`);
    return parts.join(', ');
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

class SilentProgress implements Progress {
  constructor(private readonly stream: NodeJS.WriteStream) {}
  async start(): Promise<void> {}
  update(): void {}
  log(line: string): void {
    this.stream.write(`${line}\n`);
  }
  finish(): void {}
  abort(): void {}
}

class LineProgress implements Progress {
  private readonly rate = new Rate();
  private lastPrinted = 0;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly intervalMs: number,
    private readonly label: string,
  ) {}

  async start(total: number): Promise<void> {
    this.stream.write(`camviz: ${total} ${this.label} to process\n`);
    this.lastPrinted = performance.now();
  }

  update(counts: ProgressCounts): void {
    const now = performance.now();
    if (now - this.lastPrinted < this.intervalMs || counts.done >= counts.total) return;
    this.lastPrinted = now;
    this.stream.write(`camviz: ${this.rate.describe(counts, this.label)}\n`);
  }

  log(line: string): void {
    this.stream.write(`${line}\n`);
  }

  finish(summary: string): void {
    this.stream.write(`${summary}\n`);
  }

  abort(): void {}
}

class SpinnerProgress implements Progress {
  private readonly rate = new Rate();
  private spinner: Ora | undefined;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly label: string,
  ) {}

  async start(total: number): Promise<void> {
    const { default: ora } = (await importModule('ora')) as typeof import('ora');
    // isEnabled: the choice was made above; ora's own test (any CI variable,
    // even CI=false, disables it) would print a lone "- 0/N" line and no updates.
    this.spinner = ora({ stream: this.stream, text: `0/${total} ${this.label}`, discardStdin: false, isEnabled: true }).start();
  }

  update(counts: ProgressCounts): void {
    if (this.spinner) this.spinner.text = this.rate.describe(counts, this.label);
  }

  log(line: string): void {
    if (this.spinner === undefined) {
      this.stream.write(`${line}\n`);
      return;
    }
    this.spinner.clear();
    this.stream.write(`${line}\n`);
    this.spinner.render();
  }

  finish(summary: string): void {
    if (this.spinner) this.spinner.stopAndPersist({ symbol: '', text: summary.replace(/^camviz: /, 'camviz: ') });
    else this.stream.write(`${summary}\n`);
  }

  abort(): void {
    this.spinner?.stop();
  }
}
