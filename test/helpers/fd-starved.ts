/**
 * Run as a child process (under a low `ulimit -n`): takes every file
 * descriptor the process may still open, frees some of them after the
 * given delays, and meanwhile loads an image or writes a file through
 * camviz; prints what came of it as JSON: `{"ok":true}` or
 * `{"error":"<the one-line message>"}`.
 *
 *   node fd-starved.js read <image> [freeAfterMs,...]
 *   node fd-starved.js write <file> [freeAfterMs,...]
 */
import { closeSync, openSync } from 'node:fs';
import { loadImage } from '../../src/image/image.js';
import { writeFileAtomic } from '../../src/util/atomic-file.js';
import { CamvizError } from '../../src/util/errors.js';

/** Opens /dev/null until the process may open no more (EMFILE): the descriptors taken. */
function takeEveryDescriptor(): number[] {
  const taken: number[] = [];
  for (;;) {
    try {
      taken.push(openSync('/dev/null', 'r'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EMFILE') return taken;
      throw error;
    }
  }
}

async function attempt(action: string, path: string): Promise<void> {
  if (action === 'read') await loadImage(path, { size: { width: 16, height: 16 } });
  else if (action === 'write') await writeFileAtomic(path, 'written while descriptors were short\n');
  else throw new Error(`unknown action ${action}`);
}

const [action = '', path = '', frees = ''] = process.argv.slice(2);
// sharp's libraries are loaded (opened) before the descriptors run out, as a run loads them at its start.
if (action === 'read') await attempt(action, path);
const taken = takeEveryDescriptor();
for (const ms of frees.split(',').filter((text) => text !== '')) setTimeout(() => closeSync(taken.pop()!), Number(ms));
const outcome = await attempt(action, path).then(
  () => ({ ok: true }),
  (error: unknown) => ({ error: error instanceof CamvizError ? error.describe() : String(error) }),
);
for (const fd of taken) closeSync(fd);
process.stdout.write(`${JSON.stringify(outcome)}\n`);
