/**
 * sharp, loaded with `require`: importing its CommonJS entry from an ES
 * module makes Node lex it (and the files it re-exports) at start-up.
 * Which copy of its JavaScript loads: ./sharp-choice.ts.
 */
import { requireSharp } from './sharp-choice.js';

const sharp = requireSharp();

// libvips' operation cache helps programs that reprocess the same image;
// camviz reads each image once, so the cache would only hold memory.
sharp.cache(false);

export default sharp;
