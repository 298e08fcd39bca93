/** SHA-256 as hex, shared by the model loaders (model/io.ts) and the outputs ledger (util/outputs-ledger.ts). */
import { createHash } from 'node:crypto';

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
