/**
 * Runs the command line on this process's arguments: the entry point the
 * build bundles (scripts/bundle-cli.ts). The launcher turns the code cache
 * on before (bin/camviz.js, ./launch.ts).
 */
import { main } from './main.js';

main(process.argv).then((code) => {
  process.exitCode = code;
});
