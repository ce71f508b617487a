//! Scratch for each thread of a plan's team, and the parallel loop that hands every task its
//! own piece of the output: a chunk of whole planes, or one run per channel of a block of
//! rows.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::KernelError;
use crate::team::Team;

/// Packed-input scratch, one buffer per member of the plan's team, each starting on a cache
/// line, and the team itself.
#[derive(Debug)]
pub struct Workspace {
    slots: Vec<Mutex<Vec<f32>>>,
    len: usize,
    team: Option<Arc<Team>>,
}

/// Batches of pieces per member of a team, at least: enough that members finishing at
/// different times still share the work evenly.
const MIN_CLAIMS_PER_MEMBER: usize = 8;

/// Floats per cache line: scratch buffers start on one, so that packed rows laid on vector
/// boundaries (see `Layout::lead`) are stored and loaded without splitting lines.
const LINE_FLOATS: usize = 16;

/// The output of a parallel loop, shared by the members that write disjoint pieces of it.
#[derive(Clone, Copy)]
struct SharedOutput {
    start: *mut f32,
    len: usize,
}

impl SharedOutput {
    fn new(output: &mut [f32]) -> SharedOutput {
        SharedOutput {
            start: output.as_mut_ptr(),
            len: output.len(),
        }
    }

    /// The `len` floats from `first`, which must lie inside the output.
    ///
    /// # Safety
    /// No other reference to these floats may exist while the returned one lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, first: usize, len: usize) -> &mut [f32] {
        let inside = first.checked_add(len).is_some_and(|end| end <= self.len);
        assert!(inside, "{len} floats from {first} pass the output's end");
        // SAFETY: `first + len <= self.len`, inside the output this was made from; no other
        // reference to these elements exists (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.start.add(first), len) }
    }
}

/// The part of the output one task writes: `count` runs of `len` floats, `pitch` apart, the
/// first at `start` (one run for a chunk of whole planes; one per channel for a block of
/// rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Runs {
    pub start: usize,
    pub count: usize,
    pub len: usize,
    pub pitch: usize,
}

/// One task's [`Runs`] of the output, lent one at a time.
pub(crate) struct Piece<'a> {
    output: SharedOutput,
    runs: Runs,
    _lent: std::marker::PhantomData<&'a mut [f32]>,
}

impl Piece<'_> {
    /// Run `index` of the task's runs.
    pub fn run(&mut self, index: usize) -> &mut [f32] {
        assert!(index < self.runs.count, "run {index} of {:?}", self.runs);
        let first = index
            .checked_mul(self.runs.pitch)
            .and_then(|offset| offset.checked_add(self.runs.start))
            .expect("a run's start overflows");
        // SAFETY: the runs of different tasks never overlap (the promise of
        // `Workspace::for_each_piece`'s caller), a task's piece is its own, and `&mut self`
        // lends one of its runs at a time.
        unsafe { self.output.slice(first, self.runs.len) }
    }
}

// SAFETY: members write through the pointer only to the pieces they claimed, each claimed
// once and disjoint from the others (see `Workspace::for_each_piece`), and `Team::run` returns only after every piece is
// done, while the `&mut [f32]` it came from is still borrowed.
unsafe impl Send for SharedOutput {}
// SAFETY: as above; no two members ever touch the same element.
unsafe impl Sync for SharedOutput {}

impl Workspace {
    /// Scratch of `len` floats for each of `threads` threads, and a team of them when there
    /// is more than one.
    pub(crate) fn new(threads: usize, len: usize) -> Result<Workspace, KernelError> {
        let team = if threads > 1 {
            Some(Team::shared(threads)?)
        } else {
            None
        };
        let slots = team.as_ref().map_or(1, |team| team.members());
        Ok(Workspace {
            slots: (0..slots)
                .map(|_| Mutex::new(vec![0.0; len + LINE_FLOATS]))
                .collect(),
            len,
            team,
        })
    }

    /// The scratch of team member `member` (0: the calling thread), held until the guard
    /// drops. Uncontended unless two threads run one plan at once.
    fn lock_slot(&self, member: usize) -> MutexGuard<'_, Vec<f32>> {
        self.slots[member % self.slots.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `len` floats of a slot that start on a cache line.
    fn aligned<'a>(&self, slot: &'a mut [f32]) -> &'a mut [f32] {
        let offset = slot.as_ptr().align_offset(4 * LINE_FLOATS).min(LINE_FLOATS);
        &mut slot[offset..offset + self.len]
    }

    /// Runs `task(scratch, index, chunk)` on every `chunk_len` piece of `output`, with its
    /// index: shared by the team when `parallel`, else on the calling thread alone. Which
    /// thread runs a piece never changes what it computes.
    pub(crate) fn for_each_chunk<F>(
        &self,
        parallel: bool,
        output: &mut [f32],
        chunk_len: usize,
        task: F,
    ) where
        F: Fn(&mut [f32], usize, &mut [f32]) + Sync,
    {
        let chunk_len = chunk_len.max(1);
        let len = output.len();
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
    pub(crate) unsafe fn for_each_piece<R, F>(
        &self,
        parallel: bool,
        output: &mut [f32],
        pieces: usize,
        runs_of: R,
        task: F,
    ) where
        R: Fn(usize) -> Runs + Sync,
        F: Fn(&mut [f32], usize, Piece<'_>) + Sync,
    {
        let shared = SharedOutput::new(output);
        let piece = |index: usize| Piece {
            output: shared,
            runs: runs_of(index),
            _lent: std::marker::PhantomData,
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
                        task(scratch, index, piece(index));
                    }
                });
            }
            _ => {
                let mut scratch = self.lock_slot(0);
                let scratch = self.aligned(&mut scratch);
                for index in 0..pieces {
                    task(scratch, index, piece(index));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                workspace.for_each_chunk(true, &mut output, chunk_len, |scratch, index, chunk| {
                    assert_eq!(scratch.len(), 4);
                    calls[index].fetch_add(1, Ordering::Relaxed);
                    let expected_len = chunk_len.min(len - index * chunk_len);
                    assert_eq!(chunk.len(), expected_len, "chunk {index} of {chunks}");
                    chunk.fill(index as f32);
                });
                assert!(calls.iter().all(|calls| calls.load(Ordering::Relaxed) == 1));
                for (position, &value) in output.iter().enumerate() {
                    assert_eq!(value, (position / chunk_len) as f32, "{threads} threads");
                }
            }
        }
    }

    /// Pieces of several runs each (blocks of rows of a few planes): every float of the
    /// output lent to exactly one piece, run by run, on every thread count.
    #[test]
    fn every_run_of_every_piece_is_lent_once() {
        let (planes, rows, cols, blocks) = (5, 7, 3, 3);
        let block_rows = |block: usize| block * rows / blocks..(block + 1) * rows / blocks;
        for threads in [1, 2, 3] {
            let workspace = Workspace::new(threads, 4).unwrap();
            let mut output = vec![-1.0f32; planes * rows * cols];
            let runs_of = |block: usize| {
                let block = block_rows(block);
                Runs {
                    start: block.start * cols,
                    count: planes,
                    len: block.len() * cols,
                    pitch: rows * cols,
                }
            };
            // SAFETY: the blocks of rows split the plane, so the runs are disjoint.
            unsafe {
                workspace.for_each_piece(
                    true,
                    &mut output,
                    blocks,
                    runs_of,
                    |_, block, mut piece| {
                        for plane in 0..planes {
                            let run = piece.run(plane);
                            assert!(run.iter().all(|&value| value == -1.0), "lent twice");
                            run.fill((plane * blocks + block) as f32);
                        }
                    },
                );
            }
            for (index, &value) in output.iter().enumerate() {
                let (plane, row) = (index / (rows * cols), index / cols % rows);
                let block = (0..blocks).find(|&b| block_rows(b).contains(&row)).unwrap();
                assert_eq!(value, (plane * blocks + block) as f32, "{threads} threads");
            }
        }
    }
}
