/**
 * The image formats camviz reads. Kept free of sharp so that a folder run's
 * main thread can list inputs without loading it (its workers decode).
 */

/** The formats camviz accepts, as sharp names them, with the names users know. */
export const SUPPORTED_FORMATS = {
  png: 'PNG',
  jpeg: 'JPEG',
  webp: 'WebP',
  gif: 'GIF',
  tiff: 'TIFF',
} as const;
export type SupportedFormat = keyof typeof SUPPORTED_FORMATS;

export const SUPPORTED_LIST = Object.values(SUPPORTED_FORMATS).join(', ');

/**
 * File suffixes of the supported formats: sharp's `format[id].input.fileSuffix`
 * lists, written out (a test checks them against the installed sharp).
 */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(['.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.webp', '.gif', '.tif', '.tiff']);
