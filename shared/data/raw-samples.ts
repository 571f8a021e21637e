// What a format reader (mnist, csv, idx, xor, images, text) hands to loadDataset: every sample of
// the source, in the source's own deterministic order, before splitting, label encoding and normalisation.
import type { ColumnEncoding } from './column-encoding.js';

/** The target of every sample, before it is laid out for a loss. */
export type RawTarget =
  /** Class index per sample in [0, numClasses); classNames[i] names class i where the source has names. */
  | { kind: 'classes'; classIndex: Uint32Array; numClasses: number; classNames?: string[] }
  /** One real value per sample (regression). */
  | { kind: 'values'; values: Float32Array };

/** A table's columns: the feature columns in input order, the label, and how the features were encoded (absent: every feature a plain number). */
export interface SourceColumns {
  features: string[];
  label: string;
  encodings?: ColumnEncoding[];
  /** Columns of the file that are neither features nor the label (data.ignore, or outside data.features). */
  ignored?: string[];
}

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
  columns?: SourceColumns;
  /** The source's vocabulary (text): token i's text; index 0 is the unknown/padding token. */
  vocabulary?: string[];
}
