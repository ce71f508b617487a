//! Running a kernel: the team of threads a plan runs on, each thread's scratch, and the
//! parallel loop that lends every task its own piece of the output.
//!
//! * `team` — the caller and its helper threads running one parallel loop at a time, each
//!   claiming pieces from its own home share first (checked by a loom model, see there);
//! * `sync` — the primitives the team is built on (std's and rayon's; loom's in the model);
//! * [`workspace`] — scratch per thread and the loop over pieces of the output.

use std::sync::{Arc, Mutex, PoisonError};

use crate::Error;

mod sync;
mod team;
pub(crate) mod workspace;

use team::Team;

/// The process's team of `members` threads, made on first use and shared by every plan that
/// asks for as many, so that a network's layers share one set of helpers.
fn shared_team(members: usize) -> Result<Arc<Team>, Error> {
    static TEAMS: Mutex<Vec<Arc<Team>>> = Mutex::new(Vec::new());
    let mut teams = TEAMS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(team) = teams.iter().find(|team| team.members() == members.max(2)) {
        return Ok(Arc::clone(team));
    }
    let team = Arc::new(Team::new(members).map_err(|reason| Error::Threads { reason })?);
    teams.push(Arc::clone(&team));
    Ok(team)
}

#[cfg(test)]
mod tests {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    use super::team::{Team, home_share};

    #[test]
    fn every_piece_runs_exactly_once_on_some_member() {
        let team = Team::new(3).unwrap();
        for pieces in [0, 1, 2, 7, 100] {
            let counts: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
            let members: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            team.run(pieces, &|member, piece| {
                counts[piece].fetch_add(1, SeqCst);
                members[member].fetch_add(1, SeqCst);
            });
            assert!(counts.iter().all(|count| count.load(SeqCst) == 1));
            let total: usize = members.iter().map(|count| count.load(SeqCst)).sum();
            assert_eq!(total, pieces);
        }
    }

    #[test]
    fn home_shares_split_the_pieces_into_near_equal_ranges_in_member_order() {
        for pieces in [0, 1, 2, 3, 7, 100] {
            let shares: Vec<_> = (0..3).map(|member| home_share(member, 3, pieces)).collect();
            assert_eq!(shares[0].start, 0);
            assert_eq!(shares[2].end, pieces);
            for pair in shares.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{pieces} pieces: {shares:?}");
            }
            let sizes: Vec<usize> = shares.iter().map(ExactSizeIterator::len).collect();
            let (smallest, largest) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(largest - smallest <= 1, "{pieces} pieces: {shares:?}");
        }
    }

    #[test]
    fn helpers_take_part_and_runs_follow_each_other() {
        let team = Team::new(2).unwrap();
        let helped = AtomicUsize::new(0);
        for _ in 0..200 {
            team.run(64, &|member, _| {
                if member > 0 {
                    helped.fetch_add(1, SeqCst);
                }
                // Long enough per piece that a helper arrives before the caller is done.
                std::thread::sleep(Duration::from_micros(20));
            });
        }
        assert!(helped.load(SeqCst) > 0, "the helper never took a piece");
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller() {
        let team = Team::new(2).unwrap();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(1000, &|member, _| {
                if member > 0 {
                    panic!("piece failed");
                }
                std::thread::sleep(Duration::from_micros(50));
            })
        }));
        assert!(outcome.is_err());
        // The team still works afterwards.
        let done = AtomicUsize::new(0);
        team.run(10, &|_, _| {
            done.fetch_add(1, SeqCst);
        });
        assert_eq!(done.load(SeqCst), 10);
    }
}
