/**
 * sharp, loaded with `require`: importing its CommonJS entry from an ES
 * module makes Node lex it (and the files it re-exports) at start-up.
 */
import { createRequire } from 'node:module';
import type Sharp from 'sharp';

const sharp = createRequire(import.meta.url)('sharp') as typeof Sharp;

// libvips' operation cache helps programs that reprocess the same image;
// camviz reads each image once, so the cache would only hold memory.
sharp.cache(false);

export default sharp;
