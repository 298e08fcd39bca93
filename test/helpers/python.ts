/**
 * Some tests compare with NumPy or OpenCV when a Python that has them is
 * installed, and skip otherwise (CI images differ).
 */
import { spawnSync } from 'node:child_process';

/** A Python that can import `module` (the system one first), or null. */
export function findPython(module: string): string | null {
  for (const exe of ['/usr/bin/python3', 'python3']) {
    const run = spawnSync(exe, ['-c', `import ${module}`], { encoding: 'utf8' });
    if (run.status === 0) return exe;
  }
  return null;
}
