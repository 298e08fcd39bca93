/** The pixel size a PNG file's header declares (its IHDR chunk), read without decoding the file. */
import { closeFile, openRegularFile } from './read-whole-file.js';

/** Width and height from a PNG's header, or undefined when it is not readable. */
export async function pngSize(path: string): Promise<{ width: number; height: number } | undefined> {
  const opened = await openRegularFile(path).catch(() => undefined);
  if (opened === undefined) return undefined;
  const { handle } = opened;
  try {
    const header = Buffer.alloc(24);
    const { bytesRead } = await handle.read(header, 0, 24, 0);
    if (bytesRead < 24 || header.toString('latin1', 12, 16) !== 'IHDR') return undefined;
    return { width: header.readUInt32BE(16), height: header.readUInt32BE(20) };
  } finally {
    await closeFile(handle);
  }
}
