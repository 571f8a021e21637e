// What a format reader (mnist, csv, idx, xor) hands to loadDataset: every sample of the source,
// in the source's own deterministic order, before splitting, label encoding and normalisation.

/** The target of every sample, before it is laid out for a loss. */
export type RawTarget =
  /** Class index per sample in [0, numClasses); classNames[i] names class i where the source has names. */
  | { kind: 'classes'; classIndex: Uint32Array; numClasses: number; classNames?: string[] }
  /** One real value per sample (regression). */
  | { kind: 'values'; values: Float32Array };

export interface RawSamples {
  /** What DatasetErrors name: the file read, or a pseudo-name such as "xor". */
  file: string;
  count: number;
  /** Features per sample as the source stores them; must equal the product of model.input. */
  featureSize: number;
  /** Row-major, count × featureSize. */
  x: Float32Array;
  target: RawTarget;
  /** Column names where the source has them (csv): the features in x's order, and the label. */
  columns?: { features: string[]; label: string };
}
