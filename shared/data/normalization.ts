// Standardisation (x - mean) / std, fitted on the training split only so that validation and
// test figures never see their own statistics. Statistics are computed in float64 with two
// passes (mean, then squared deviations); a constant column gets std 1, so it maps to ~0, not NaN.

export interface Moments {
  mean: number[];
  std: number[];
}

/** Per-column mean and population std of a row-major matrix with `rowSize` columns. */
export function fitColumns(matrix: Float32Array, rowSize: number): Moments {
  const rows = rowSize === 0 ? 0 : matrix.length / rowSize;
  const sum = new Float64Array(rowSize);
  for (let i = 0; i < matrix.length; i++) sum[i % rowSize] = (sum[i % rowSize] as number) + (matrix[i] as number);
  const mean = Array.from(sum, (s) => (rows === 0 ? 0 : s / rows));
  const squares = new Float64Array(rowSize);
  for (let i = 0; i < matrix.length; i++) {
    const d = (matrix[i] as number) - (mean[i % rowSize] as number);
    squares[i % rowSize] = (squares[i % rowSize] as number) + d * d;
  }
  const std = Array.from(squares, (sq, c) => {
    const s = rows === 0 ? 0 : Math.sqrt(sq / rows);
    // Below float32 resolution of the mean, the spread is rounding noise of a constant column.
    return s > 1e-6 * Math.abs(mean[c] as number) && s > 0 ? s : 1;
  });
  return { mean, std };
}

/** Applies (x - mean) / std column-wise, in place. */
export function standardize(matrix: Float32Array, rowSize: number, moments: Moments): void {
  for (let i = 0; i < matrix.length; i++) {
    const c = i % rowSize;
    matrix[i] = ((matrix[i] as number) - (moments.mean[c] as number)) / (moments.std[c] as number);
  }
}
