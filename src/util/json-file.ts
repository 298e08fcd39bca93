/** Reading optional JSON files: absent is fine, present but broken is an error naming the file. */
import { readFile } from 'node:fs/promises';
import { CamvizError } from './errors.js';

/** The parsed file, or undefined when it does not exist or cannot be read. */
export async function readOptionalJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CamvizError(`${what} is not valid JSON: ${(error as Error).message}`, { file: path });
  }
}
