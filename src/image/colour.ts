/** Background colours as users write them; free of sharp, so the command line checks them before loading it. */
import { UsageError } from '../util/errors.js';

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

const NAMED_COLOURS: Readonly<Record<string, Rgb>> = {
  white: { r: 255, g: 255, b: 255 },
  black: { r: 0, g: 0, b: 0 },
};

/** Parses '#rgb', '#rrggbb', 'white', 'black' or 'r,g,b' (0-255 each). */
export function parseBackground(value: string): Rgb {
  const text = value.trim().toLowerCase();
  const named = NAMED_COLOURS[text];
  if (named !== undefined) return { ...named };

  const short = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/.exec(text);
  if (short !== null) {
    const [r, g, b] = short.slice(1).map((digit) => parseInt(digit + digit, 16));
    return { r: r!, g: g!, b: b! };
  }
  const long = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/.exec(text);
  if (long !== null) {
    const [r, g, b] = long.slice(1).map((pair) => parseInt(pair, 16));
    return { r: r!, g: g!, b: b! };
  }
  const triple = /^(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})$/.exec(text);
  if (triple !== null) {
    const [r, g, b] = triple.slice(1).map(Number);
    if ([r, g, b].every((channel) => channel! <= 255)) return { r: r!, g: g!, b: b! };
  }
  throw new UsageError(
    `bad background colour "${value}" (use #rgb, #rrggbb, white, black or r,g,b with values 0-255)`,
  );
}
