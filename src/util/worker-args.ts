/**
 * The Node options a camviz worker thread starts with: the process's own
 * (a worker inherits them, e.g. --max-old-space-size), less those that
 * describe the main script itself. A process started as `node
 * --input-type=module -e '...'` (a library user's script) would otherwise
 * give every worker `--input-type`, which Node refuses for a worker started
 * from a file ("--input-type can only be used with string input"), and the
 * worker dies before its first line.
 */

/** Options that take the main script's text as their next argument. */
const SCRIPT_OPTIONS = new Set(['-e', '--eval', '-p', '--print']);

export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const option = execArgv[i]!;
    if (SCRIPT_OPTIONS.has(option)) {
      i++;
      continue;
    }
    if (option.startsWith('--input-type') || option.startsWith('--eval=') || option.startsWith('--print=')) continue;
    kept.push(option);
  }
  return kept;
}
