/** The pixel size a PNG file's header declares (its IHDR chunk), read without decoding the file. */
import { readStartOfRegularFile } from './read-whole-file.js';

/** Width and height from a PNG's header, or undefined when it is not readable. */
export async function pngSize(path: string): Promise<{ width: number; height: number } | undefined> {
  const header = await readStartOfRegularFile(path, 24);
  if (header === undefined || header.length < 24 || header.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return { width: header.readUInt32BE(16), height: header.readUInt32BE(20) };
}
