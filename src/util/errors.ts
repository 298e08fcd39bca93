/**
 * Errors that reach the user. Every failure camviz reports is one line:
 * `camviz: <what> (<file>)`, so that a folder run's log stays readable and
 * scripts can grep it.
 */
import { oneLine, printable } from './text.js';

export interface CamvizErrorOptions {
  /** The file or folder the problem is about, if any. */
  file?: string;
  cause?: unknown;
}

export class CamvizError extends Error {
  readonly file: string | undefined;
  /** 1 for failures, 2 for usage errors. */
  readonly exitCode: number = 1;

  constructor(message: string, options: CamvizErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CamvizError';
    this.file = options.file;
  }

  /**
   * The one-line form, without the `camviz:` prefix. Names a model or a
   * file supplies may hold newlines or escapes: written as escapes, so
   * that 'a\nb' and 'a b' stay two names. (A foreign message put in one
   * is joined first, where it is put: oneLine.)
   */
  describe(): string {
    const message = printable(this.message);
    return this.file === undefined ? message : `${message} (${printable(this.file)})`;
  }
}

/** A mistake in how camviz was called: exit code 2. */
export class UsageError extends CamvizError {
  override readonly exitCode: number = 2;

  constructor(message: string, options: CamvizErrorOptions = {}) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/** One line for any thrown value; unexpected errors keep their own message. */
export function describeError(error: unknown): string {
  if (error instanceof CamvizError) return error.describe();
  if (error instanceof Error) return oneLine(error.message);
  return oneLine(String(error));
}

export function exitCodeOf(error: unknown): number {
  return error instanceof CamvizError ? error.exitCode : 1;
}

