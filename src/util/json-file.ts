/** Reading optional JSON files: absent is fine, present but broken is an error naming the file. */
import { CamvizError } from './errors.js';
import { readRegularFile } from './read-whole-file.js';

/**
 * The largest JSON file read (256 MiB, a manifest of some 250,000 images
 * or more). Larger is refused before it is read: parsing 200 MB took 1 GB
 * of heap, and V8's longest string is just under 512 MiB.
 */
export const MAX_JSON_BYTES = 256 * 1024 * 1024;

/**
 * The parsed file, or undefined when it does not exist or cannot be read (a
 * folder, a FIFO or a device in its place: not waited on). A file over
 * `maxBytes` is an error naming it (parsing one of 200 MB took 1 GB).
 */
export async function readOptionalJson(path: string, what: string, maxBytes = MAX_JSON_BYTES): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = (await readRegularFile(path, maxBytes)).bytes;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_FS_FILE_TOO_LARGE') throw new CamvizError(`${what} is larger than the ${maxBytes} bytes camviz reads of it`, { file: path });
    return undefined;
  }
  try {
    // Inside the try: text too long for one string is an error naming the file, not an absent file.
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw new CamvizError(`${what} is not valid JSON: ${(error as Error).message}`, { file: path });
  }
}
