//! [`Team`]: the threads of one plan, running one parallel loop at a time with the calling
//! thread as the first member.
//!
//! A convolution of a few hundred microseconds cannot afford to wait for sleeping threads.
//! Handing the loop to a rayon pool from outside costs two wake-ups per run (a worker at the
//! start, the caller at the end), measured at tens of microseconds each on a virtual machine
//! whose idle cores halt; the 3-group ShuffleNet layers ran slower on two threads than on one.
//! So the team works differently:
//!
//! * the caller starts on the pieces at once; helpers join as they arrive. Every member has
//!   a home share of the pieces, the same contiguous range every run, and claims from it
//!   first, then from the others' shares, so no piece waits for a thread that is asleep, and
//!   a layer run again (or a network whose layers split their channels alike) finds its
//!   data in the cache of the core that used it last;
//! * the caller returns as soon as every piece is done: it waits for pieces in progress,
//!   never for a helper that has not arrived (a late helper finds the loop closed);
//! * helpers spin for a short while after each loop before they sleep, so that the next run
//!   finds them awake.
//!
//! The helpers are threads of a rayon pool owned by the team, each running the team's serve
//! loop. Plans that ask for the same number of threads share one team (`exec::shared_team`),
//! so a network of fifty layers has one set of helpers, not fifty; their runs take turns.
//! Which member computes a piece never changes its result: every piece is a fixed computation
//! on its own part of the output.
//!
//! Every atomic, lock, thread and clock comes from `super::sync`, nothing from the rest of the
//! crate: `tests/team_model.rs` compiles this file against loom's primitives and checks the
//! handshake below (every piece run once, the job never touched after [`Team::run`] returns,
//! no helper left asleep through a run or the team's end) under every interleaving.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::PoisonError;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use super::sync::{
    Arc, AtomicBool, AtomicU64, AtomicUsize, Condvar, Helpers, Mutex, Patience, fence, spin_loop,
    yield_now,
};

/// How long a helper keeps polling for the next loop before it sleeps: enough to bridge the
/// gap between consecutive layers of a network, short enough not to hold a core for long.
const SPIN: Duration = Duration::from_micros(100);

/// About how many claims each member makes in a loop: more balance the load better, fewer
/// move the counter's cache line between cores less often.
const CLAIMS_PER_MEMBER: usize = 8;

/// The loop a team runs, `job(member, piece)` for every piece, with its lifetime erased (a
/// type alias's trait object is `'static`).
type Job = dyn Fn(usize, usize) + Sync;

/// A counter alone on its cache line (two, for the adjacent-line prefetcher).
#[repr(align(128))]
struct Counter(AtomicUsize);

/// The threads of a plan: the caller and `members − 1` helpers.
pub(crate) struct Team {
    shared: Arc<Shared>,
    /// Held for a whole run: callers sharing a plan take turns.
    running: Mutex<()>,
    // The helpers' threads; dropped after `shared.shutdown` ends their serve loops.
    _helpers: Helpers,
}

/// A job pointer with its lifetime erased, valid while its loop is open (see [`Team::run`]).
#[derive(Clone, Copy)]
struct JobPointer(*const Job);

// SAFETY: the pointee is `Sync` (`Job` requires it), so sharing the pointer between threads
// shares only `&Job`; when it may be dereferenced is governed by the protocol in `Team::run`.
unsafe impl Send for JobPointer {}

struct Shared {
    /// Members of the team, the caller included.
    members: usize,
    /// Bumped by every run; helpers watch it for work.
    generation: AtomicU64,
    /// The current loop's job, `None` between runs.
    job: Mutex<Option<JobPointer>>,
    /// Whether helpers may still enter the current loop.
    open: AtomicBool,
    /// Helpers inside the current loop.
    active: AtomicUsize,
    /// Per member, the next unclaimed piece of its home share (see [`Shared::share`]), each
    /// on a cache line of its own; and the count of pieces.
    next: Vec<Counter>,
    pieces: AtomicUsize,
    /// A helper's panic, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Helpers asleep on `wake`, and whether the team is gone.
    sleeping: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Team {
    /// A team of `members` threads, the caller included (so `members − 1` helpers, at least
    /// one); an error if the threads cannot be started.
    pub fn new(members: usize) -> Result<Team, String> {
        let helpers = members.max(2) - 1;
        let shared = Arc::new(Shared {
            members: helpers + 1,
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next: (0..=helpers)
                .map(|_| Counter(AtomicUsize::new(0)))
                .collect(),
            pieces: AtomicUsize::new(0),
            panic: Mutex::new(None),
            sleeping: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let serving = Arc::clone(&shared);
        let helpers = Helpers::spawn(helpers, move |member| serving.serve(member))?;
        Ok(Team {
            shared,
            running: Mutex::new(()),
            _helpers: helpers,
        })
    }

    /// Members, the caller included.
    pub fn members(&self) -> usize {
        self.shared.members
    }

    /// Runs `job(member, piece)` for every piece in `0..pieces`, each exactly once, on the
    /// caller (member 0) and whichever helpers arrive; returns when all are done. A panic in
    /// a helper's piece is re-raised here.
    ///
    /// Calls from several threads take turns.
    pub fn run(&self, pieces: usize, job: &(dyn Fn(usize, usize) + Sync)) {
        let _turn = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = &*self.shared;
        // SAFETY: the cast only erases the lifetime; what makes the later dereferences sound
        // is that helpers dereference the pointer only between entering the loop
        // (`active += 1`, fence, then seeing `open`) and leaving it (`active -= 1`), and this
        // function closes the loop (`open = false`, fence) and waits for `active == 0` before
        // it returns, while `job` is still borrowed. A store, a sequentially consistent
        // fence, then a load on each side: of the two loads, at least one sees the other
        // side's store. So a helper either is seen in `active` (and is waited for) or sees the
        // loop closed and backs off untouched.
        let pointer = JobPointer(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const Job>(job)
        });
        *shared.job.lock().unwrap_or_else(PoisonError::into_inner) = Some(pointer);
        for (member, next) in shared.next.iter().enumerate() {
            next.0.store(shared.share(member, pieces).start, SeqCst);
        }
        shared.pieces.store(pieces, SeqCst);
        shared.open.store(true, SeqCst);
        shared.generation.fetch_add(1, SeqCst);
        // Pairs with the fence in `next_generation`: this run sees the helper asleep, or the
        // helper sees this generation before it sleeps.
        fence(SeqCst);
        if shared.sleeping.load(SeqCst) > 0 {
            let _guard = shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            shared.wake.notify_all();
        }

        // Even if a piece panics here, the loop must be closed and the helpers waited for
        // before `job` goes out of scope.
        let own = panic::catch_unwind(AssertUnwindSafe(|| shared.claim_pieces(0, job)));
        if own.is_err() {
            shared.close_shares();
        }

        shared.open.store(false, SeqCst);
        // Pairs with the fence in `serve` (see the SAFETY note above).
        fence(SeqCst);
        // Helpers still inside are finishing a piece: spin, but yield the core if one of
        // them seems to need it (more threads than cores).
        let mut spins = 0u32;
        while shared.active.load(SeqCst) > 0 {
            if spins < 4096 {
                spins += 1;
                spin_loop();
            } else {
                yield_now();
            }
        }
        *shared.job.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let helper_panic = shared
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(payload) = own.err().or(helper_panic) {
            panic::resume_unwind(payload);
        }
    }
}

impl Shared {
    /// Runs pieces until none is left, claiming a few at a time, its home share first, then
    /// the other members' in turn: a depthwise layer has a hundred pieces of a microsecond
    /// each, where one claim per piece would bounce a counter's cache line between the cores
    /// for every one.
    fn claim_pieces(&self, member: usize, job: &(dyn Fn(usize, usize) + Sync)) {
        let pieces = self.pieces.load(SeqCst);
        let batch = (pieces / (CLAIMS_PER_MEMBER * self.members)).max(1);
        for home in (member..self.members).chain(0..member) {
            let end = self.share(home, pieces).end;
            loop {
                let first = self.next[home].0.fetch_add(batch, SeqCst);
                if first >= end {
                    break;
                }
                for piece in first..(first + batch).min(end) {
                    job(member, piece);
                }
            }
        }
    }

    /// Member `member`'s home share of `pieces` (see [`home_share`]).
    fn share(&self, member: usize, pieces: usize) -> std::ops::Range<usize> {
        home_share(member, self.members, pieces)
    }

    /// Hands out no more pieces (after a panic): every share's counter past its end.
    fn close_shares(&self) {
        for next in &self.next {
            next.0.store(usize::MAX / 2, SeqCst);
        }
    }

    /// A helper's life: wait for a loop, take part in it, repeat until the team is dropped.
    fn serve(&self, member: usize) {
        // Not the current value: a run may have started before this thread did.
        let mut seen = 0;
        loop {
            let Some(generation) = self.next_generation(seen) else {
                return;
            };
            seen = generation;
            self.active.fetch_add(1, SeqCst);
            fence(SeqCst);
            if self.open.load(SeqCst) {
                let job = *self.job.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(JobPointer(job)) = job {
                    // SAFETY: the loop is open and this helper is counted in `active`, so the
                    // caller of `Team::run` is still inside it and `job` is alive (see there).
                    let job = unsafe { &*job };
                    let outcome =
                        panic::catch_unwind(AssertUnwindSafe(|| self.claim_pieces(member, job)));
                    if let Err(payload) = outcome {
                        // Stop handing out pieces; the caller re-raises the panic.
                        self.close_shares();
                        *self.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
                    }
                }
            }
            self.active.fetch_sub(1, SeqCst);
        }
    }

    /// Waits until the generation moves past `seen` (spinning for [`SPIN`], then asleep),
    /// returning it, or `None` once the team is dropped.
    fn next_generation(&self, seen: u64) -> Option<u64> {
        let patience = Patience::new(SPIN);
        loop {
            if self.shutdown.load(SeqCst) {
                return None;
            }
            let generation = self.generation.load(SeqCst);
            if generation != seen {
                return Some(generation);
            }
            if patience.is_spent() {
                break;
            }
            for _ in 0..64 {
                spin_loop();
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleeping.fetch_add(1, SeqCst);
        // Pairs with the fence in `Team::run`.
        fence(SeqCst);
        let generation = loop {
            // Checked after `sleeping` is raised: a run that bumps the generation and then
            // finds `sleeping == 0` is seen here instead.
            let generation = self.generation.load(SeqCst);
            if generation != seen || self.shutdown.load(SeqCst) {
                break generation;
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        self.sleeping.fetch_sub(1, SeqCst);
        drop(guard);
        (!self.shutdown.load(SeqCst)).then_some(generation)
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        let _guard = self
            .shared
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.wake.notify_all();
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

/// Member `member`'s home share of `pieces` in a team of `members`: the `member`-th of
/// `members` near-equal contiguous ranges, in member order.
pub(super) fn home_share(member: usize, members: usize, pieces: usize) -> std::ops::Range<usize> {
    let boundary = |member: usize| (member as u128 * pieces as u128 / members as u128) as usize;
    boundary(member)..boundary(member + 1)
}
