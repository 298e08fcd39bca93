/**
 * Runs the command line on this process's arguments: the entry point the
 * build bundles (scripts/bundle-cli.ts). The launcher turns the code cache
 * on before (bin/camviz.js, ./launch.ts).
 */
import { main } from './main.js';

/**
 * Until the command finishes, the process would end with 1 and say why: a
 * run whose event loop empties first (a promise nobody settles, such as a
 * dependency whose callback never comes) ended with 0, nothing done and
 * nothing said.
 */
const UNFINISHED = 'camviz: internal error: the command stopped before it finished (it was left waiting on something that never answered)\n';
process.exitCode = 1;
const unfinished = (): void => void process.stderr.write(UNFINISHED);
process.once('exit', unfinished);

main(process.argv).then((code) => {
  process.off('exit', unfinished);
  process.exitCode = code;
  // Registered last, this ends the process once the event loop has drained
  // (every file written, every worker ended) and the other 'exit' listeners
  // have run (the code cache's writer). It skips Node's own teardown after
  // them, the environment's and the heap's, which a finished command does
  // not need: 5-25 ms of a one-image run (interleaved). Inside 'exit',
  // process.exit emits nothing again; an 'exit' listener added after this
  // one would not run (none is).
  process.once('exit', () => process.exit());
});
