//! Scratch for each thread of a plan's team, and the parallel loop that hands every task its
//! own piece of the output: a chunk of whole planes, or one run per channel of a block of
//! rows, each lent as a [`Sink`] that applies the plan's epilogue.

use std::sync::{Arc, Mutex, MutexGuard};

use super::shared_team;
use super::team::Team;
use crate::Error;
use crate::epilogue::{Epilogue, PostPass, Sink};
use crate::simd::Element;

/// Scratch, one buffer per member of the plan's team, each starting on a cache line, and the
/// team itself.
#[derive(Debug)]
pub struct Workspace<T> {
    slots: Vec<Mutex<Vec<T>>>,
    len: usize,
    team: Option<Arc<Team>>,
}

/// Batches of pieces per member of a team, at least: enough that members finishing at
/// different times still share the work evenly.
const MIN_CLAIMS_PER_MEMBER: usize = 8;

/// Bytes per cache line: scratch buffers start on one, so that packed rows laid on vector
/// boundaries (see `Layout::lead`) are stored and loaded without splitting lines.
const LINE_BYTES: usize = 64;

/// The output of a run, the residual its post-operations add (a tensor of the output's
/// shape), and the post-operations, applied to each task's piece once the task is done.
pub(crate) struct Output<'a, T> {
    pub values: &'a mut [T],
    pub residual: Option<&'a [T]>,
    pub post: Option<PostPass<T>>,
}

/// The output of a parallel loop, shared by the members that write disjoint pieces of it.
struct SharedOutput<'a, T> {
    start: *mut T,
    len: usize,
    residual: Option<&'a [T]>,
    post: Option<PostPass<T>>,
}

impl<T: Copy> Clone for SharedOutput<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Copy> Copy for SharedOutput<'_, T> {}

impl<'a, T> SharedOutput<'a, T> {
    fn new(output: Output<'a, T>) -> SharedOutput<'a, T> {
        if let Some(residual) = output.residual {
            assert_eq!(
                residual.len(),
                output.values.len(),
                "a residual of another size"
            );
        }
        SharedOutput {
            start: output.values.as_mut_ptr(),
            len: output.values.len(),
            residual: output.residual,
            post: output.post,
        }
    }

    /// The `len` elements from `first`, which must lie inside the output, with the residual's.
    ///
    /// # Safety
    /// No other reference to these elements may exist while the returned one lives.
    unsafe fn slice(&self, first: usize, len: usize) -> (&'a mut [T], Option<&'a [T]>) {
        let inside = first.checked_add(len).is_some_and(|end| end <= self.len);
        assert!(inside, "{len} elements from {first} pass the output's end");
        // SAFETY: `first + len <= self.len`, inside the output this was made from; no other
        // reference to these elements exists (the caller's promise).
        let values = unsafe { std::slice::from_raw_parts_mut(self.start.add(first), len) };
        (
            values,
            self.residual.map(|residual| &residual[first..first + len]),
        )
    }
}

/// The part of the output one task writes: `count` runs of `len` elements, `pitch` apart, the
/// first at `start` (one run for a chunk of whole planes; one per channel for a block of
/// rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Runs {
    pub start: usize,
    pub count: usize,
    pub len: usize,
    pub pitch: usize,
}

/// One task's [`Runs`] of the output, lent one at a time as sinks of epilogue `E`.
pub(crate) struct Piece<'a, T, E> {
    output: SharedOutput<'a, T>,
    runs: Runs,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> Piece<'_, T, E> {
    /// Run `index` of the task's runs.
    pub fn run(&mut self, index: usize) -> Sink<'_, T, E> {
        assert!(index < self.runs.count, "run {index} of {:?}", self.runs);
        let first = index
            .checked_mul(self.runs.pitch)
            .and_then(|offset| offset.checked_add(self.runs.start))
            .expect("a run's start overflows");
        // SAFETY: the runs of different tasks never overlap (the promise of
        // `Workspace::for_each_piece`'s caller), a task's piece is its own, and `&mut self`
        // lends one of its runs at a time.
        let (values, residual) = unsafe { self.output.slice(first, self.runs.len) };
        Sink::new(values, residual, self.epilogue)
    }
}

// SAFETY: members write through the pointer only to the pieces they claimed, each claimed
// once and disjoint from the others (see `Workspace::for_each_piece`), and `Team::run`
// returns only after every piece is done, while the `&mut [T]` it came from is still
// borrowed; the residual is only read.
unsafe impl<T: Send + Sync> Send for SharedOutput<'_, T> {}
// SAFETY: as above; no two members ever touch the same element.
unsafe impl<T: Send + Sync> Sync for SharedOutput<'_, T> {}

impl<T: Element> Workspace<T> {
    /// Scratch of `len` elements for each of `threads` threads, and a team of them when there
    /// is more than one.
    pub(crate) fn new(threads: usize, len: usize) -> Result<Workspace<T>, Error> {
        let team = if threads > 1 {
            Some(shared_team(threads)?)
        } else {
            None
        };
        let slots = team.as_ref().map_or(1, |team| team.members());
        let line = Self::line_elements();
        Ok(Workspace {
            slots: (0..slots)
                .map(|_| Mutex::new(vec![T::ZERO; len + line]))
                .collect(),
            len,
            team,
        })
    }

    /// Elements per cache line.
    fn line_elements() -> usize {
        LINE_BYTES / size_of::<T>()
    }

    /// The scratch of team member `member` (0: the calling thread), held until the guard
    /// drops. Uncontended unless two threads run one plan at once.
    fn lock_slot(&self, member: usize) -> MutexGuard<'_, Vec<T>> {
        self.slots[member % self.slots.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `len` elements of a slot that start on a cache line.
    fn aligned<'a>(&self, slot: &'a mut [T]) -> &'a mut [T] {
        let line = Self::line_elements();
        let offset = slot.as_ptr().align_offset(LINE_BYTES).min(line);
        &mut slot[offset..offset + self.len]
    }

    /// Runs `task(scratch, index, chunk)` on every `chunk_len` piece of `output`, with its
    /// index: shared by the team when `parallel`, else on the calling thread alone. Which
    /// thread runs a piece never changes what it computes.
    pub(crate) fn for_each_chunk<E, F>(
        &self,
        parallel: bool,
        output: Output<'_, T>,
        epilogue: E,
        chunk_len: usize,
        task: F,
    ) where
        E: Epilogue<T>,
        F: Fn(&mut [T], usize, Sink<'_, T, E>) + Sync,
    {
        let chunk_len = chunk_len.max(1);
        let len = output.values.len();
        let runs_of = |index: usize| Runs {
            start: index * chunk_len,
            count: 1,
            len: chunk_len.min(len - index * chunk_len),
            pitch: 0,
        };
        // SAFETY: the chunks `index * chunk_len ..` are disjoint.
        unsafe {
            self.for_each_piece(
                parallel,
                output,
                epilogue,
                len.div_ceil(chunk_len),
                runs_of,
                |scratch, index, mut piece| task(scratch, index, piece.run(0)),
            );
        }
    }

    /// Runs `task(scratch, index, piece)` for every index below `pieces`, the piece lending
    /// the runs `runs_of(index)` of `output`: shared by the team when `parallel`, else on the
    /// calling thread alone. Which thread runs a piece never changes what it computes.
    ///
    /// # Safety
    /// The runs of different indices must not overlap (each is checked to lie inside
    /// `output` when lent).
    pub(crate) unsafe fn for_each_piece<E, R, F>(
        &self,
        parallel: bool,
        output: Output<'_, T>,
        epilogue: E,
        pieces: usize,
        runs_of: R,
        task: F,
    ) where
        E: Epilogue<T>,
        R: Fn(usize) -> Runs + Sync,
        F: Fn(&mut [T], usize, Piece<'_, T, E>) + Sync,
    {
        let shared = SharedOutput::new(output);
        let piece = |index: usize| Piece {
            output: shared,
            runs: runs_of(index),
            epilogue,
        };
        // The task, then the post-operations on its piece, while it is in this core's cache.
        let task = |scratch: &mut [T], index: usize| {
            task(scratch, index, piece(index));
            if let Some(post) = &shared.post {
                let runs = runs_of(index);
                for run in 0..runs.count {
                    let first = run * runs.pitch + runs.start;
                    // SAFETY: the task lent this piece has returned, so no reference into
                    // it remains; no other task's runs overlap it (the caller's promise).
                    let (values, residual) = unsafe { shared.slice(first, runs.len) };
                    post.apply(values, residual);
                }
            }
        };
        match &self.team {
            Some(team) if parallel => {
                // Many small pieces (a depthwise channel block of a 7x7 plane: a quarter of a
                // microsecond) are claimed in batches, about eight per member: one claim and
                // one scratch lock per batch, and fewer piece boundaries for the members
                // to share cache lines across (960 channels of 7x7 ran slower on two threads
                // than on one).
                let claim_len = (pieces / (MIN_CLAIMS_PER_MEMBER * team.members())).max(1);
                team.run(pieces.div_ceil(claim_len), &|member, claim| {
                    let mut scratch = self.lock_slot(member);
                    let scratch = self.aligned(&mut scratch);
                    for index in claim * claim_len..((claim + 1) * claim_len).min(pieces) {
                        // The team runs each claim once and claims do not overlap, so each
                        // piece is lent once.
                        task(scratch, index);
                    }
                });
            }
            _ => {
                let mut scratch = self.lock_slot(0);
                let scratch = self.aligned(&mut scratch);
                for index in 0..pieces {
                    task(scratch, index);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epilogue::Identity;
    use crate::epilogue::testing::{self as epilogue_testing, residual_leaky};
    use crate::simd::portable;

    /// Chunks claimed in runs (many small chunks per member): each chunk handed out once,
    /// with its own index and its own piece of the output, the last one short.
    #[test]
    fn every_chunk_is_handed_out_once_with_its_own_piece() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for threads in [1, 2, 3] {
            let workspace = Workspace::new(threads, 4).unwrap();
            for chunks in [1, 2, 7, 16, 17, 48, 49, 100, 257] {
                let chunk_len = 5;
                let len = chunks * chunk_len - 2;
                let mut output = vec![-1.0f32; len];
                let calls: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
                let output_of = Output {
                    values: &mut output,
                    residual: None,
                    post: None,
                };
                workspace.for_each_chunk(
                    true,
                    output_of,
                    Identity,
                    chunk_len,
                    |scratch, index, mut chunk| {
                        assert_eq!(scratch.len(), 4);
                        calls[index].fetch_add(1, Ordering::Relaxed);
                        let expected_len = chunk_len.min(len - index * chunk_len);
                        assert_eq!(chunk.len(), expected_len, "chunk {index} of {chunks}");
                        chunk.store_all(portable::F32, &vec![index as f32; expected_len]);
                    },
                );
                assert!(calls.iter().all(|calls| calls.load(Ordering::Relaxed) == 1));
                for (position, &value) in output.iter().enumerate() {
                    assert_eq!(value, (position / chunk_len) as f32, "{threads} threads");
                }
            }
        }
    }

    /// Pieces of several runs each (blocks of rows of a few planes): every element of the
    /// output lent to exactly one piece, run by run, on every thread count, each run with the
    /// residual of its own elements.
    #[test]
    fn every_run_of_every_piece_is_lent_once_with_its_residual() {
        let (planes, rows, cols, blocks) = (5, 7, 3, 3);
        let block_rows = |block: usize| block * rows / blocks..(block + 1) * rows / blocks;
        let len = planes * rows * cols;
        let residual: Vec<f32> = (0..len).map(|v| v as f32 * 0.25).collect();
        for threads in [1, 2, 3] {
            let workspace = Workspace::new(threads, 4).unwrap();
            let mut output = vec![-1.0f32; len];
            let runs_of = |block: usize| {
                let block = block_rows(block);
                Runs {
                    start: block.start * cols,
                    count: planes,
                    len: block.len() * cols,
                    pitch: rows * cols,
                }
            };
            let output_of = Output {
                values: &mut output,
                residual: Some(&residual),
                post: None,
            };
            // SAFETY: the blocks of rows split the plane, so the runs are disjoint.
            unsafe {
                workspace.for_each_piece(
                    true,
                    output_of,
                    residual_leaky(),
                    blocks,
                    runs_of,
                    |_, block, mut piece| {
                        for plane in 0..planes {
                            let mut run = piece.run(plane);
                            assert!(
                                run.values().iter().all(|&value| value == -1.0),
                                "lent twice"
                            );
                            let sums = vec![(plane * blocks + block) as f32; run.len()];
                            run.store_all(portable::F32, &sums);
                        }
                    },
                );
            }
            for (index, &value) in output.iter().enumerate() {
                let (plane, row) = (index / (rows * cols), index / cols % rows);
                let block = (0..blocks).find(|&b| block_rows(b).contains(&row)).unwrap();
                let sum = (plane * blocks + block) as f32;
                let wanted = epilogue_testing::expected(&[sum], &[residual[index]])[0];
                assert_eq!(value, wanted, "{threads} threads, element {index}");
            }
        }
    }
}
