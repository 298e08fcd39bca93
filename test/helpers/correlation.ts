/**
 * A unit-stride NHWC correlation (plain or depthwise, dilated) written out
 * in plain loops, in float64: the reference that camviz's convolutions and
 * their input gradients are checked against.
 */

/** A unit-stride NHWC correlation: input [n, h, w, c], filter [kh, kw, c, m] (depthwise: output channel c·m + j reads channel c). */
export interface Correlation {
  input: [number, number, number, number];
  filter: [number, number, number, number];
  dilations: [number, number];
  padding: 'same' | 'valid';
  depthwise: boolean;
}

export function geometryOf(conv: Correlation): { top: number; left: number; outHeight: number; outWidth: number; outChannels: number } {
  const [, h, w, c] = conv.input;
  const [kh, kw, , m] = conv.filter;
  const [dh, dw] = conv.dilations;
  const [spanH, spanW] = [(kh - 1) * dh, (kw - 1) * dw];
  const same = conv.padding === 'same';
  return { top: same ? Math.floor(spanH / 2) : 0, left: same ? Math.floor(spanW / 2) : 0, outHeight: same ? h : h - spanH, outWidth: same ? w : w - spanW, outChannels: conv.depthwise ? c * m : m };
}

/** Calls `visit(inputIndex, filterIndex, outputIndex)` for every tap of the correlation: y[out] += x[in] · f[filter]. */
export function forEachTap(conv: Correlation, visit: (input: number, filter: number, output: number) => void): void {
  const [n, h, w, c] = conv.input;
  const [kh, kw, , m] = conv.filter;
  const { top, left, outHeight, outWidth, outChannels } = geometryOf(conv);
  for (let b = 0; b < n; b++)
    for (let r = 0; r < outHeight; r++)
      for (let col = 0; col < outWidth; col++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            const row = r - top + i * conv.dilations[0];
            const column = col - left + j * conv.dilations[1];
            if (row < 0 || row >= h || column < 0 || column >= w) continue;
            for (let ci = 0; ci < c; ci++)
              for (let o = 0; o < (conv.depthwise ? m : outChannels); o++) {
                const out = conv.depthwise ? ci * m + o : o;
                visit(((b * h + row) * w + column) * c + ci, ((i * kw + j) * c + ci) * m + o, ((b * outHeight + r) * outWidth + col) * outChannels + out);
              }
          }
}

export function correlate(conv: Correlation, x: ArrayLike<number>, filter: ArrayLike<number>): Float64Array {
  const { outHeight, outWidth, outChannels } = geometryOf(conv);
  const y = new Float64Array(conv.input[0] * outHeight * outWidth * outChannels);
  forEachTap(conv, (input, tap, output) => (y[output]! += x[input]! * filter[tap]!));
  return y;
}

/** The written-out correlation's adjoint: dx[in] = Σ dy[out] · f[filter] over the same taps. */
export function correlationAdjoint(conv: Correlation, dy: ArrayLike<number>, filter: ArrayLike<number>): Float64Array {
  const dx = new Float64Array(conv.input.reduce((a, b) => a * b, 1));
  forEachTap(conv, (input, tap, output) => (dx[input]! += dy[output]! * filter[tap]!));
  return dx;
}
