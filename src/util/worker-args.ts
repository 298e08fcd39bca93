/**
 * The Node options a camviz worker thread starts with. Left to Node
 * (undefined) the worker inherits the process's own, V8 options included
 * (`--max-semi-space-size`), which Node refuses in an explicit list
 * ("invalid execArgv flags"). Only a process whose options describe its main
 * script gets an explicit list, without them: one started as `node
 * --input-type=module -e '...'` (a library user's script) would otherwise
 * give every worker `--input-type`, which Node refuses for a worker started
 * from a file ("--input-type can only be used with string input"), and the
 * worker dies before its first line. That list keeps the other options; a
 * V8 option among them is the rare case Node still refuses.
 */

/** Options that take the main script's text as their next argument. */
const SCRIPT_OPTIONS = new Set(['-e', '--eval', '-p', '--print']);

export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] | undefined {
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
  return kept.length === execArgv.length ? undefined : kept;
}
