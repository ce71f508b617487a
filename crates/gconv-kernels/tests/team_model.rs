//! The team's handshake (`src/exec/team.rs`), model-checked with loom: the same source file,
//! compiled here against loom's atomics, lock, condition variable and threads (the twin of
//! `src/exec/sync.rs` below), run under every interleaving loom reaches within its preemption
//! bound. What each model proves, for a caller and one helper:
//!
//! * every piece of a loop runs exactly once, on some member;
//! * the job is never called after [`Team::run`] returns (the caller's borrow of it has ended
//!   then): a helper that did would see the caller's `alive` flag cleared;
//! * no helper is left asleep through a run it should join or through the team's end: a lost
//!   wake-up leaves every thread blocked, which loom reports as a deadlock, and the team's
//!   drop joins the helper.

#[path = "../src/exec"]
mod exec {
    /// loom's twin of `src/exec/sync.rs`.
    pub mod sync {
        use std::cell::Cell;
        use std::time::Duration;

        pub(super) use loom::hint::spin_loop;
        pub(super) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
        pub(super) use loom::sync::{Arc, Condvar, Mutex};
        pub(super) use loom::thread::yield_now;

        /// Helpers as loom threads, joined when the team drops them.
        pub(super) struct Helpers {
            threads: Vec<loom::thread::JoinHandle<()>>,
        }

        impl Helpers {
            pub(super) fn spawn<F>(count: usize, serve: F) -> Result<Helpers, String>
            where
                F: Fn(usize) + Send + Sync + 'static,
            {
                let serve = Arc::new(serve);
                let threads = (1..=count)
                    .map(|member| {
                        let serve = Arc::clone(&serve);
                        loom::thread::spawn(move || serve(member))
                    })
                    .collect();
                Ok(Helpers { threads })
            }
        }

        impl Drop for Helpers {
            fn drop(&mut self) {
                for thread in self.threads.drain(..) {
                    thread.join().expect("a helper panicked");
                }
            }
        }

        /// One poll, then asleep: the model sees both a helper that catches the next run
        /// while polling and one that must be woken.
        pub(super) struct Patience {
            polls: Cell<u32>,
        }

        impl Patience {
            pub(super) fn new(_spin: Duration) -> Patience {
                Patience {
                    polls: Cell::new(0),
                }
            }

            pub(super) fn is_spent(&self) -> bool {
                let polls = self.polls.get();
                self.polls.set(polls + 1);
                polls >= 1
            }
        }
    }

    pub mod team;
}

use exec::team::Team;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// The model checker, bounded (at most `preemptions` forced thread switches per execution)
/// so that the models finish in a second.
fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(model);
}

/// Runs a loop of `pieces` on `team`, then checks that each ran once and that the job is not
/// called once `run` has returned.
fn run_and_check(team: &Team, pieces: usize) {
    let alive = AtomicBool::new(true);
    let counts: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
    team.run(pieces, &|member, piece| {
        assert!(member < team.members());
        assert!(alive.load(SeqCst), "the job ran after `run` returned");
        counts[piece].fetch_add(1, SeqCst);
    });
    alive.store(false, SeqCst);
    for (piece, count) in counts.iter().enumerate() {
        assert_eq!(count.load(SeqCst), 1, "piece {piece} of {pieces}");
    }
}

#[test]
fn a_loop_runs_every_piece_once_and_its_job_never_after_it_returns() {
    check(3, || {
        let team = Team::new(2).expect("loom threads start");
        run_and_check(&team, 2);
    });
}

#[test]
fn consecutive_loops_each_run_whole_and_the_helper_ends_with_the_team() {
    check(3, || {
        let team = Team::new(2).expect("loom threads start");
        run_and_check(&team, 1);
        run_and_check(&team, 2);
    });
}

#[test]
fn two_helpers_share_a_loop_without_running_a_piece_twice() {
    check(2, || {
        let team = Team::new(3).expect("loom threads start");
        run_and_check(&team, 3);
    });
}
