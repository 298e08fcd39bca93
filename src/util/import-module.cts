/**
 * `import()` from a CommonJS file. The command line's bundle
 * (scripts/bundle-cli.ts) is CommonJS compiled through the V8 code cache,
 * and in Node 20 a script compiled from cached data has no loader for its
 * own `import()` calls (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING): ES-only
 * packages (ora) are imported here, a file the bundle leaves outside and
 * Node compiles itself.
 */
export function importModule(specifier: string): Promise<unknown> {
  return import(specifier);
}
