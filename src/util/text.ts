/** Small text helpers shared by error messages. */

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Up to `count` candidates closest to `wanted`, nearest first, if reasonably close. */
export function closestMatches(wanted: string, candidates: readonly string[], count = 3, key: (candidate: string) => string = (c) => c): string[] {
  const target = wanted.toLowerCase();
  return candidates
    .map((candidate) => ({ candidate, distance: editDistance(target, key(candidate).toLowerCase()) }))
    .filter((entry) => entry.distance <= Math.max(2, Math.ceil(target.length / 2)))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, count)
    .map((entry) => entry.candidate);
}

/**
 * Text from outside camviz (a model's node names, a library's error) made
 * safe for a terminal line: control characters (newlines, ANSI escapes)
 * written as escapes, so that a model cannot forge table rows or colour
 * the terminal.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (char) => {
    const code = char.charCodeAt(0);
    return code === 0x0a ? '\\n' : code === 0x09 ? '\\t' : code === 0x0d ? '\\r' : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}

/**
 * A message of several lines as one: its non-empty lines, trimmed, joined
 * by spaces (ONNX Runtime puts the useful part of "Got invalid dimensions"
 * on its second line), made printable and cut at `limit` characters.
 */
export function oneLine(text: string, limit = 500): string {
  const joined = printable(
    text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '')
      .join(' '),
  );
  return joined.length <= limit ? joined : `${joined.slice(0, limit - 1)}…`;
}
