/**
 * The faithfulness metrics' names, options and record shape, apart from
 * their implementations so that the command line can check `--metrics`
 * without loading TensorFlow.js.
 */

/** What `--metrics` may list, in the order records and tables show them. */
export const METRIC_NAMES = ['confidence', 'deletion', 'insertion', 'road'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** `--metric-steps`: the deletion and insertion curves' steps. */
export const METRIC_STEPS = { default: 20, min: 1, max: 1000 } as const;

/** What a cam task measures per map: plain data, so that worker threads receive it. */
export interface MetricsOptions {
  /** The requested metrics, in METRIC_NAMES order, without repeats. */
  names: MetricName[];
  /** Steps of the deletion and insertion curves. */
  steps: number;
}

/** One map's values; a metric that was not requested is absent. */
export interface MetricValues {
  /** p(class | image x normalised map) - p(class | image). */
  confidenceChange?: number;
  /** Area under p(class) as the most relevant pixels are set to zero (model-input space). */
  deletionAuc?: number;
  /** Area under p(class) as the most relevant pixels are put back into a blurred copy. */
  insertionAuc?: number;
  /** ROAD, most relevant first: mean p(class) change over the removal percentiles. */
  roadMorf?: number;
  /** ROAD, least relevant first: the same, removing the least relevant pixels. */
  roadLerf?: number;
  /** (roadLerf - roadMorf) / 2, pytorch-grad-cam's ROADCombined. */
  roadCombined?: number;
}

/** The keys of MetricValues, in the order tables show them. */
export const METRIC_KEYS = ['confidenceChange', 'deletionAuc', 'insertionAuc', 'roadMorf', 'roadLerf', 'roadCombined'] as const satisfies readonly (keyof MetricValues)[];
export type MetricKey = (typeof METRIC_KEYS)[number];

/** What a CAM record holds under `metrics`: the map's values and a seeded random map's, measured the same way. */
export interface MetricsRecord extends MetricValues {
  random: MetricValues;
  /**
   * Present when the map is constant over its finite cells, or has none (a
   * ReLU'd map that is zero everywhere): it ranks no pixel above another,
   * so its deletion, insertion and ROAD curves follow the pixels' reading
   * order, not the map. `camviz metrics` leaves such maps out of its means.
   */
  constantMap?: true;
}

/** Methods whose output has no map to measure (guided backprop: a gradient image, no score). */
export const MAPLESS_METHODS: readonly string[] = ['guidedbackprop'];

export function isMetricName(value: string): value is MetricName {
  return (METRIC_NAMES as readonly string[]).includes(value);
}
