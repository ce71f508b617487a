//! What the team is built on: std's atomics, lock and condition variable, rayon's threads and
//! the clock. `team.rs` reaches them only through this module, so that the model test
//! (`tests/team_model.rs`) can compile the very same `team.rs` against a twin of it made of
//! loom's primitives and check the team's handshake under every interleaving.

use std::time::{Duration, Instant};

pub(super) use std::hint::spin_loop;
pub(super) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
pub(super) use std::sync::{Arc, Condvar, Mutex};
pub(super) use std::thread::yield_now;

/// The threads that run a team's helpers: a rayon pool of the team's own, dropped (its
/// threads ending) with the team.
pub(super) struct Helpers {
    _pool: rayon::ThreadPool,
}

impl Helpers {
    /// `count` threads, thread `k` running `serve(k + 1)` (members are counted from 1: the
    /// caller is member 0).
    pub(super) fn spawn<F>(count: usize, serve: F) -> Result<Helpers, String>
    where
        F: Fn(usize) + Send + Sync + 'static,
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|index| format!("gconv-{}", index + 1))
            .build()
            .map_err(|error| error.to_string())?;
        let serve = Arc::new(serve);
        for member in 1..=count {
            let serve = Arc::clone(&serve);
            pool.spawn(move || serve(member));
        }
        Ok(Helpers { _pool: pool })
    }
}

/// How long a waiting helper keeps polling before it goes to sleep.
pub(super) struct Patience {
    until: Instant,
}

impl Patience {
    /// Polling for `spin` from now.
    pub(super) fn new(spin: Duration) -> Patience {
        Patience {
            until: Instant::now() + spin,
        }
    }

    /// Whether the time to poll is up.
    pub(super) fn is_spent(&self) -> bool {
        Instant::now() >= self.until
    }
}
