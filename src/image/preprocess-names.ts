/**
 * The preprocessing names, apart from preprocess.ts (which loads
 * TensorFlow.js) so that the command line can list them without loading it.
 */
export const PREPROCESS_NAMES = ['tf', 'torch', 'caffe', 'unit', 'none'] as const;
export type PreprocessName = (typeof PREPROCESS_NAMES)[number];
