/**
 * Reads started ahead of their use, each taken once: the command line
 * starts reading a model's files before the command's modules load (they
 * hold the main thread for a few hundred ms while libuv's threads read), and
 * the load takes what was read. A read ahead never rejects: one that failed
 * or found nothing is taken as undefined, and the load reads (and reports)
 * as it would have without it.
 */
export class ReadsAhead<T> {
  private readonly reads = new Map<string, Promise<T | undefined>>();

  /** Starts `read` under `key` unless one is under way; settles when it ends. */
  start(key: string, read: () => Promise<T | undefined>): Promise<void> {
    let reading = this.reads.get(key);
    if (reading === undefined) {
      reading = settled(read);
      this.reads.set(key, reading);
    }
    return reading.then(() => undefined);
  }

  /** What was read under `key`, taken once; undefined when nothing was started, or it failed or found nothing. */
  async take(key: string): Promise<T | undefined> {
    const reading = this.reads.get(key);
    if (reading === undefined) return undefined;
    this.reads.delete(key);
    return reading;
  }
}

/** What `read` gives, undefined if it fails: by rejecting, or by throwing before it returns a promise (a read that starts synchronously). */
function settled<T>(read: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return read().catch(() => undefined);
  } catch {
    return Promise.resolve(undefined);
  }
}
