/**
 * Environment variables set for one piece of a test, then put back as the
 * caller had them (set or unset), whatever the piece throws.
 */

function setVariable(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/** Runs `run` with `name` set to `value` (undefined: unset), then restores it. */
export async function withEnv<T>(name: string, value: string | undefined, run: () => T | Promise<T>): Promise<T> {
  const saved = process.env[name];
  setVariable(name, value);
  try {
    return await run();
  } finally {
    setVariable(name, saved);
  }
}

/** `withEnv` for synchronous code. */
export function withEnvSync<T>(name: string, value: string | undefined, run: () => T): T {
  const saved = process.env[name];
  setVariable(name, value);
  try {
    return run();
  } finally {
    setVariable(name, saved);
  }
}
