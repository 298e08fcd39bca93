/**
 * What a manifest read back must hold for compare, merge, metrics and
 * --skip-existing to trust its fields: a manifest edited by hand, cut, or
 * from another tool gave raw TypeErrors naming no file ("filter is not a
 * function"), or was taken at its word (a score of "abc" compared as NaN,
 * outputs given as a string copied letter by letter). The first field that
 * is not what camviz writes is named, with the record it is in.
 */

/** Why `value` is not a manifest camviz writes, or undefined when its fields have the types camviz gives them. */
export function manifestProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'it is not a JSON object';
  if (typeof value['command'] !== 'string') return "its 'command' is not a command name";
  if (!isObject(value['options'])) return "its 'options' is not an object";
  if (!isObject(value['model']) || !isOptionalString(value['model']['sha256'])) return "its 'model' is not an object with a sha256";
  if (!isOptionalString(value['workingDirectory'])) return "its 'workingDirectory' is not a folder name";
  if (!(value['shard'] === null || value['shard'] === undefined || (Array.isArray(value['shard']) && value['shard'].every(isShard)))) return "its 'shard' is not a list of {index, count}";
  const records = value['records'];
  if (!Array.isArray(records)) return 'it has no records';
  for (const [index, record] of records.entries()) {
    const problem = recordProblem(record);
    if (problem !== undefined) return `records[${index}] ${problem}`;
  }
  return undefined;
}

function recordProblem(record: unknown): string | undefined {
  if (!isObject(record)) return 'is not an object';
  if (typeof record['input'] !== 'string' || typeof record['relative'] !== 'string') return "has no 'input' and 'relative' paths";
  if (record['status'] !== 'ok' && record['status'] !== 'error') return "has a 'status' other than ok or error";
  if (!Array.isArray(record['outputs']) || !record['outputs'].every((output) => typeof output === 'string')) return "has 'outputs' that are not a list of file names";
  const predictions = record['predictions'];
  if (predictions !== undefined && !(Array.isArray(predictions) && predictions.every(isPrediction))) return "has 'predictions' that are not a list of {index, label, probability}";
  const results = record['results'];
  if (results === undefined) return undefined;
  if (!Array.isArray(results)) return "has 'results' that are not a list";
  for (const [index, result] of results.entries()) {
    const problem = resultProblem(result);
    if (problem !== undefined) return `results[${index}] ${problem}`;
  }
  return undefined;
}

/** A cam result's fields that compare and metrics read (an fmap result has a shape instead of a class). */
function resultProblem(result: unknown): string | undefined {
  if (!isObject(result)) return 'is not an object';
  if (typeof result['png'] !== 'string' || !isOptionalString(result['npy'])) return "has no 'png' file name (or an 'npy' that is not one)";
  // compare and metrics take a result with a method or a class for a cam result: it must hold all a cam result's fields.
  if (!('class' in result) && !('method' in result)) return undefined;
  if (typeof result['method'] !== 'string' || typeof result['layer'] !== 'string') return "has no 'method' and 'layer'";
  if (!isClass(result['class'])) return "has a 'class' that is not {index, label}";
  if (!isFiniteNumber(result['score']) || !(result['probability'] === null || isFiniteNumber(result['probability']))) return "has a 'score' or 'probability' that is not a number";
  if (!isObject(result['peak']) || !isFiniteNumber(result['peak']['x']) || !isFiniteNumber(result['peak']['y'])) return "has a 'peak' that is not {x, y}";
  const metrics = result['metrics'];
  if (metrics !== undefined && !(isObject(metrics) && isObject(metrics['random']))) return "has 'metrics' that are not an object with the random map's";
  return undefined;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isOptionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isClassIndex(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function isClass(value: unknown): boolean {
  return isObject(value) && isClassIndex(value['index']) && (value['label'] === null || typeof value['label'] === 'string');
}

function isPrediction(value: unknown): boolean {
  return isClass(value) && ((value as Record<string, unknown>)['probability'] === null || isFiniteNumber((value as Record<string, unknown>)['probability']));
}

function isShard(value: unknown): boolean {
  if (!isObject(value)) return false;
  const { index, count } = value;
  return typeof index === 'number' && typeof count === 'number' && Number.isInteger(index) && Number.isInteger(count) && index >= 1 && index <= count;
}
