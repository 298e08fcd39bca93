/** Reading optional JSON files: absent is fine, present but broken is an error naming the file. */
import { CamvizError } from './errors.js';
import { readRegularFile } from './read-whole-file.js';

/** The parsed file, or undefined when it does not exist or cannot be read (a folder, a FIFO or a device in its place: not waited on). */
export async function readOptionalJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = (await readRegularFile(path)).bytes.toString('utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CamvizError(`${what} is not valid JSON: ${(error as Error).message}`, { file: path });
  }
}
