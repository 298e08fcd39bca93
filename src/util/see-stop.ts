/**
 * The check long model work makes between its passes (Score-CAM's chunks
 * of masked inputs, the metrics' chunks of perturbed images, aug-smooth's
 * augmentations): once the run is stopping, no pass starts.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Throws the signal's reason once it is aborted, after a turn of the event
 * loop: tfjs runs a pass synchronously, and a stop (a signal's handler, a
 * worker's message) is seen only between turns. Without a signal, nothing
 * waits.
 */
export async function seeStop(signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return;
  await nextTurn();
  signal.throwIfAborted();
}
