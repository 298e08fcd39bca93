/** `camviz merge`: join the output folders of a sharded run into one. */
import { mergeRuns } from '../batch/merge.js';
import { displayPath, outFolder } from './common.js';

export interface MergeCliOptions {
  out: string;
  report?: boolean;
  quiet?: boolean;
  json?: boolean;
}

export async function runMerge(shardDirs: string[], options: MergeCliOptions): Promise<number> {
  const log = (message: string): void => {
    if (!options.quiet) process.stderr.write(`camviz: ${message}\n`);
  };
  const result = await mergeRuns(shardDirs, outFolder(options.out), { report: options.report === true, log });
  const { summary } = result.manifest;
  log(
    `merged ${shardDirs.length} shard folder${shardDirs.length === 1 ? '' : 's'}: ${summary.inputs} inputs, ${summary.ok} ok, ${summary.error} failed, ` +
      `${result.copied} files copied; ${displayPath(result.manifestPath)}` +
      (result.reportPath === undefined ? '' : `, ${displayPath(result.reportPath)}`) +
      (result.manifest.interrupted ? '; some shards were interrupted' : ''),
  );
  if (options.json) {
    const report = result.reportPath === undefined ? {} : { report: result.reportPath };
    process.stdout.write(`${JSON.stringify({ manifest: result.manifestPath, ...report, shard: result.manifest.shard, summary, copied: result.copied }, null, 2)}\n`);
  }
  return result.exitCode;
}
