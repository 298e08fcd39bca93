/**
 * The preprocessing names, apart from preprocess.ts (which loads
 * TensorFlow.js) so that the command line can list them without loading it.
 */
export const PREPROCESS_NAMES = ['tf', 'torch', 'caffe', 'unit', 'none'] as const;
export type PreprocessName = (typeof PREPROCESS_NAMES)[number];

/** What each preprocessing does, for --help. */
export const PREPROCESS_HELP: Record<PreprocessName, string> = {
  tf: 'x/127.5 - 1, range [-1, 1] (MobileNet, Inception)',
  torch: '(x/255 - mean)/std with ImageNet mean and std',
  caffe: 'RGB -> BGR, minus the ImageNet BGR mean (VGG, ResNet50 from Keras)',
  unit: 'x/255, range [0, 1]',
  none: 'raw 0-255 values',
};
