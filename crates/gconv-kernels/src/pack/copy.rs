//! The vector copies packing is made of: rows gathered through masks that read no padding
//! address, whole rows shifted, zeroing.

use crate::simd::{Element, Simd, lanes_between};

/// Which columns of which source rows [`gather_rows`] reads: row `r` is the `width` elements at
/// `r·pitch`, and target column `k` is its column `start + k·step`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    pub start: isize,
    pub step: usize,
    pub width: usize,
    pub pitch: usize,
}

/// A group's channels as packing sees them: `count` of them, `source_pitch` elements apart in
/// the input and `target_pitch` apart in the packed buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack {
    pub count: usize,
    pub source_pitch: usize,
    pub target_pitch: usize,
}

impl Stack {
    /// Each channel's input and its packed target.
    pub(super) fn pairs<'a, T>(
        self,
        channels: &'a [T],
        packed: &'a mut [T],
    ) -> impl Iterator<Item = (&'a [T], &'a mut [T])> {
        channels
            .chunks_exact(self.source_pitch)
            .zip(self.targets(packed))
    }

    /// Each channel's packed target.
    pub(super) fn targets<T>(self, packed: &mut [T]) -> impl Iterator<Item = &mut [T]> {
        packed.chunks_exact_mut(self.target_pitch).take(self.count)
    }
}

/// `count` rows of `len` elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows {
    pub count: usize,
    pub len: usize,
}

/// For every channel `c` of `stack`, fills `rows` rows of its target at
/// `target[c·target_pitch..]`: `target[c·target_pitch + r·len + k] =
/// source[c·source_pitch + r·pitch + start + k·step]` where that column lies in `0..width`,
/// zero where it falls on the padding. Steps 1 and 2 go a vector of `k` at a time, every
/// channel and row, through loads under a mask that reads no padding address (step 2 keeps
/// the even lanes of two), the masks worked out once per vector of `k`; larger steps one float
/// at a time. (Packing rows one at a time, clipping each, cost a ResNeXt 14x14 stride-2 layer
/// a third of its time.)
#[inline(always)]
pub(crate) fn gather_rows<S: Simd>(
    simd: S,
    source: &[S::Elem],
    columns: Columns,
    stack: Stack,
    target: &mut [S::Elem],
    rows: Rows,
) {
    let lanes = S::LANES;
    let Columns {
        start,
        step,
        width,
        pitch,
    } = columns;
    let Stack {
        count,
        source_pitch,
        target_pitch,
    } = stack;
    let Rows {
        count: row_count,
        len: row_len,
    } = rows;
    if count == 0 || row_count == 0 || row_len == 0 {
        return;
    }
    assert!((count - 1) * target_pitch + row_count * row_len <= target.len());
    assert!((count - 1) * source_pitch + (row_count - 1) * pitch + width <= source.len());
    if step > 2 {
        for c in 0..count {
            for r in 0..row_count {
                let row = &source[c * source_pitch + r * pitch..][..width];
                let out = &mut target[c * target_pitch + r * row_len..][..row_len];
                for (k, slot) in out.iter_mut().enumerate() {
                    let column = start.saturating_add((k * step) as isize);
                    *slot = usize::try_from(column)
                        .ok()
                        .and_then(|column| row.get(column))
                        .copied()
                        .unwrap_or(S::Elem::ZERO);
                }
            }
        }
        return;
    }
    // The lanes of the vector of columns from `column` that fall on a row.
    let on_row = |column: isize| {
        let first = column.saturating_neg().clamp(0, lanes as isize) as usize;
        let end = (width as isize)
            .saturating_sub(column)
            .clamp(first as isize, lanes as isize) as usize;
        lanes_between(first, end)
    };
    for first_k in (0..row_len).step_by(lanes) {
        let count_k = lanes.min(row_len - first_k);
        let column = start.saturating_add((first_k * step) as isize);
        let high_column = column.saturating_add(lanes as isize);
        let (low, high) = (on_row(column), on_row(high_column));
        for c in 0..count {
            let mut from = source
                .as_ptr()
                .wrapping_add(c * source_pitch)
                .wrapping_offset(column);
            let mut to = target[c * target_pitch + first_k..].as_mut_ptr();
            for _ in 0..row_count {
                // SAFETY: in row `r` of channel `c` (`from` = row start + `column`), a lane
                // set in `low` reads column `column + l`, inside `0..width` (see `on_row`),
                // so inside `source` (asserted above); `high` likewise from `high_column`.
                // The store covers `target[c·target_pitch + r·row_len + first_k..][..count_k]`,
                // inside `target` (asserted above).
                unsafe {
                    let values = if step == 1 {
                        simd.load_masked(from, low)
                    } else {
                        let high_from = from.wrapping_add(lanes);
                        simd.deinterleave(
                            simd.load_masked(from, low),
                            simd.load_masked(high_from, high),
                        )
                        .0
                    };
                    simd.store_first(to, values, count_k);
                }
                from = from.wrapping_add(pitch);
                to = to.wrapping_add(row_len);
            }
        }
    }
}

/// `target[t] = source[t + shift]` for the lanes of `masks` (one mask per vector of
/// `target`, the columns that stay on their row), zero for the others: a copy of whole rows
/// shifted by a few columns, the columns it wraps around the rows' ends masked off.
#[inline(always)]
pub(super) fn shifted_copy<S: Simd>(
    simd: S,
    source: &[S::Elem],
    shift: isize,
    masks: &[u32],
    target: &mut [S::Elem],
) {
    let lanes = S::LANES;
    assert_eq!(source.len(), target.len());
    assert!(masks.len() * lanes >= target.len());
    for ((index, chunk), &mask) in target.chunks_mut(lanes).enumerate().zip(masks) {
        let count = chunk.len();
        // Lanes past the end of the source would read the rows that follow.
        let mask = mask & (u32::MAX >> (32 - count));
        let base = source
            .as_ptr()
            .wrapping_add(index * lanes)
            .wrapping_offset(shift);
        // SAFETY: a set lane `l` reads `source[index·lanes + l + shift]`: `l < count`, so
        // `index·lanes + l` is a column of a row of `source`, and the mask keeps only lanes
        // whose column shifted by `shift` stays on that row, inside `source`. The store covers
        // `chunk`, `count` elements.
        unsafe {
            simd.store_first(chunk.as_mut_ptr(), simd.load_masked(base, mask), count);
        }
    }
}

/// Zeroes `target` a vector at a time: rows of padding are too short for a call to `memset`.
#[inline(always)]
pub(crate) fn zero<S: Simd>(simd: S, target: &mut [S::Elem]) {
    let zeros = simd.splat(S::Elem::ZERO);
    let mut chunks = target.chunks_exact_mut(S::LANES);
    for chunk in &mut chunks {
        simd.store_into(chunk, zeros);
    }
    simd.store_prefix(chunks.into_remainder(), zeros);
}

/// `target.copy_from_slice(source)` in whole vectors and one masked vector: rows are too
/// short for a call to `memmove` to pay for itself (measured 12–14 % of a layer).
#[inline(always)]
pub(crate) fn copy<S: Simd>(simd: S, source: &[S::Elem], target: &mut [S::Elem]) {
    assert_eq!(source.len(), target.len());
    let mut sources = source.chunks_exact(S::LANES);
    let mut targets = target.chunks_exact_mut(S::LANES);
    for (from, to) in (&mut sources).zip(&mut targets) {
        simd.store_into(to, simd.load_from(from));
    }
    let (source, target) = (sources.remainder(), targets.into_remainder());
    simd.store_prefix(target, simd.load_prefix(source));
}
