/**
 * Float32 buffers kept for reuse across passes. A fresh buffer of a few
 * hundred kilobytes is fresh memory: on the machines camviz is benched on
 * each of its pages costs a fault of 5-10 µs on first touch, and V8 frees
 * dead buffers only at its next collection, so a pass that takes new ones
 * faults its pages in again about every other time (the per-image passes'
 * slow half, README Performance). Each buffer is taken by one user at a
 * time, so passes in flight together never share one.
 */
export class SpareBuffers {
  private readonly spares: Float32Array[] = [];

  /** `limit`: the most kept (passes of a few sizes: a folder's last batch is smaller); the oldest goes first. */
  constructor(private readonly limit = 4) {}

  /** A buffer of exactly `length` values: a spare one (its old values still in it) or a new one. */
  take(length: number): Float32Array {
    const index = this.spares.findIndex((spare) => spare.length === length);
    return index < 0 ? new Float32Array(length) : this.spares.splice(index, 1)[0]!;
  }

  /** Drops every spare buffer. */
  clear(): void {
    this.spares.length = 0;
  }

  /** Gives `buffer` back for a later `take`; its taker no longer reads or writes it. One given back twice is kept once, never handed to two takers. */
  keep(buffer: Float32Array): void {
    if (buffer.length === 0 || this.spares.includes(buffer)) return;
    this.spares.push(buffer);
    if (this.spares.length > this.limit) this.spares.shift();
  }
}
