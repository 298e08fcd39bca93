/**
 * Which batch each output write belongs to, so that the outputs of a batch
 * that threw (and so gets no records) can be removed: no map is left on
 * disk without its record. A thread has several batches in flight (one
 * computing, one decoding, one writing), so a write finds its batch in the
 * asynchronous context the batch runs in (AsyncLocalStorage), not in a
 * variable that the next batch would overwrite. Worker threads tell the
 * main thread of each write (worker.ts); a run in this thread removes its
 * batch's outputs itself (pool.ts, InProcessExecutor).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { rm } from 'node:fs/promises';
import type { OutputWatcher } from '../tasks/common.js';

/** A batch's output writes: those under way, and the files written. */
export class BatchWrites {
  private underWay = 0;
  private readonly waiting: (() => void)[] = [];
  /** Files this batch wrote (a write that failed left whatever was there: not this run's). */
  readonly written = new Set<string>();

  constructor(readonly id: number) {}

  started(): void {
    this.underWay++;
  }

  ended(path: string, written: boolean): void {
    if (written) this.written.add(path);
    this.underWay--;
    if (this.underWay === 0) for (const resolve of this.waiting.splice(0)) resolve();
  }

  /** Settles once no write of the batch is under way. */
  settled(): Promise<void> {
    return this.underWay === 0 ? Promise.resolve() : new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Removes the files the batch wrote, once its writes have settled (a write still under way would land after). */
  async removeWritten(): Promise<void> {
    await this.settled();
    await Promise.all([...this.written].map((path) => rm(path, { force: true }).catch(() => undefined)));
  }
}

export const batchWrites = new AsyncLocalStorage<BatchWrites>();

/** Tells each write to the batch it runs for (none outside a batch); `tell` adds what else the caller does with it. */
export function batchWriteWatcher(tell: Partial<OutputWatcher> = {}): OutputWatcher {
  return {
    writing(path) {
      batchWrites.getStore()?.started();
      tell.writing?.(path);
    },
    settled(path, written) {
      batchWrites.getStore()?.ended(path, written);
      tell.settled?.(path, written);
    },
  };
}
