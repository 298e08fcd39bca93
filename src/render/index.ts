/** camviz's rendering layer: pure functions over typed arrays, and file writers. */
export {
  COLORMAPS,
  COLORMAP_SIZE,
  type ColormapName,
  applyColormap,
  colormapIndex,
  colormapLut,
  isColormapName,
} from './colormap.js';
export { type AxisTable, linearAxisTable, mapToOriginal, resizeBilinear } from './resize.js';
export { type MapPeak, type ValueRange, argmax, finiteRange, minMaxNormalize } from './normalize.js';
export {
  type ActivationShape,
  type FeatureGrid,
  type FeatureGridOptions,
  type GridLayout,
  type GridTile,
  makeFeatureGrid,
} from './grid.js';
export {
  DEFAULT_OVERLAY_ALPHA,
  DEFAULT_OVERLAY_COLORMAP,
  type OverlayOptions,
  heatmapImage,
  overlayHeatmap,
} from './overlay.js';
export { type PngOptions, encodePng } from './png.js';
export { type NpyArray, decodeNpy, encodeNpy } from './npy.js';
export {
  COLORSPACE_RGB,
  EVENT_FILE_VERSION,
  EventWriter,
  type EventWriterOptions,
  encodeEvent,
  frameRecord,
  maskCrc,
} from './tensorboard.js';
