/** Reading optional JSON files: absent is fine, present but broken is an error naming the file. */
import { CamvizError } from './errors.js';
import { MAX_FILE_BYTES, readRegularFile } from './read-whole-file.js';

/**
 * The parsed file, or undefined when it does not exist or cannot be read (a
 * folder, a FIFO or a device in its place: not waited on). A file over
 * `maxBytes` is an error naming it (parsing one of 200 MB took 1 GB).
 */
export async function readOptionalJson(path: string, what: string, maxBytes = MAX_FILE_BYTES): Promise<unknown> {
  let text: string;
  try {
    text = (await readRegularFile(path, maxBytes)).bytes.toString('utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_FS_FILE_TOO_LARGE') throw new CamvizError(`${what} is larger than the ${maxBytes} bytes camviz reads of it`, { file: path });
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CamvizError(`${what} is not valid JSON: ${(error as Error).message}`, { file: path });
  }
}
