/**
 * Opening a file when the process (EMFILE) or the system (ENFILE) has run
 * out of file descriptors. A folder run holds many at once (decodes and
 * writes overlapping model work, worker threads, reads ahead), and under a
 * low `ulimit -n` some open fails now and would succeed a moment later,
 * once another image's files are closed. As graceful-fs does, such an open
 * is tried again, when a file closes in this thread or after a growing
 * wait, a bounded number of times; then the error is what it is: too many
 * open files, never a wrong diagnosis of the image.
 */

/** Whether `error` is the system's "too many open files" (of this process: EMFILE; of the system: ENFILE). */
export function isOutOfDescriptors(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** The waits for a descriptor before giving up (ms): about 6 s in all. */
const RETRY_WAITS_MS: readonly number[] = [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 1000];

/** Waiters woken when this thread closes a file (fileClosed): a descriptor is free now. */
const waiting = new Set<() => void>();

/**
 * Says that this thread closed a file: opens waiting for a descriptor try
 * again now rather than at the end of their wait.
 */
export function fileClosed(): void {
  for (const wake of [...waiting]) wake();
}

/**
 * `open()`'s result; when it fails for want of descriptors (isOutOfDescriptors),
 * tried again each time a file closes in this thread, and at the end of
 * each of `waits` (growing: 5 ms to 1 s), one after the other; once they
 * have passed (about 6 s), the last try's error is rejected. Other errors
 * are rejected at once.
 */
export async function retryWhileOutOfDescriptors<T>(open: () => Promise<T>, waits: readonly number[] = RETRY_WAITS_MS): Promise<T> {
  let wait = 0;
  let waitEnds = Number.NEGATIVE_INFINITY;
  for (;;) {
    try {
      return await open();
    } catch (error) {
      if (!isOutOfDescriptors(error)) throw error;
      // A close woke this try before its wait ended: the rest of that wait goes on, so that wake-ups do not use up the tries.
      if (performance.now() >= waitEnds) {
        const next = waits[wait++];
        if (next === undefined) throw error;
        waitEnds = performance.now() + next;
      }
      await descriptorFreed(waitEnds - performance.now());
    }
  }
}

/** Resolves when this thread closes a file, or after `ms`. */
function descriptorFreed(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const wake = (): void => {
      clearTimeout(timer);
      waiting.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    waiting.add(wake);
  });
}
