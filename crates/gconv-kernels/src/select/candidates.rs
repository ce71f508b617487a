//! Every kernel that can run a problem, not only the one the table chooses: what a measured
//! plan ([`crate::Planning::Measure`]) times against the table's choice.
//!
//! The table's rules say where a kernel *pays*; the candidates are where it *runs* well
//! enough to be worth a timing: each depthwise kernel wherever it suits the problem (the
//! channels-in-lanes kernel on both widths of an AVX-512 tier, while its padded block stays
//! in L2), and the grouped kernels' bodies on every packing whose layout the problem has.
//! The thresholds the table's rules draw (a reduction long enough for the channel-vector
//! body, a plane small enough for lanes) are exactly what a measurement second-guesses.
//!
//! Only kernels that sum each output's taps in the table's choice's order are candidates,
//! so that a measured plan gives the table's plan's bits, for every thread count: every
//! kernel sums bias, then the taps row by row, except the unpacked depthwise kernel where
//! its windows share input rows ([`unpacked::sums_out_of_row_order`]), which competes only
//! where the table chose it, and then with nothing.

use super::grouped::Partition;
use super::{Body, Choice, Facts, GroupedChoice, Problem, Selection, forward};
use crate::Error;
use crate::kernels::depthwise::{lanes, shifted, streamed, unpacked};
use crate::pack::layout::{Packing, VectorOrder};

/// The forward kernels that can run `problem`: the table's selection first, then every other
/// candidate once, in a fixed order (so that a measurement is repeatable).
pub(crate) fn forward(problem: Problem<'_>) -> Result<(Selection, Vec<Choice>), Error> {
    let table = forward::select(problem)?;
    let facts = Facts::new(problem);
    let order = row_order(problem, table.choice);
    let mut others: Vec<Choice> = Vec::new();
    let mut add = |choice: Choice| {
        let same_sums = row_order(problem, choice) == order;
        if choice != table.choice && same_sums && !others.contains(&choice) {
            others.push(choice);
        }
    };
    for choice in depthwise(&facts) {
        add(choice);
    }
    for choice in grouped(&facts) {
        add(choice);
    }
    Ok((table, others))
}

/// Whether `choice` sums each output's taps row by row (else in an order of its own).
fn row_order(problem: Problem<'_>, choice: Choice) -> bool {
    !(choice == Choice::DepthwiseUnpacked && unpacked::sums_out_of_row_order(problem.geometry))
}

/// The depthwise kernels that suit the problem.
fn depthwise(facts: &Facts<'_>) -> Vec<Choice> {
    let Problem { geometry, isa, .. } = facts.problem;
    let mut choices = Vec::new();
    if geometry.in_channels_per_group() != 1 {
        return choices;
    }
    if streamed::suits(geometry) {
        choices.push(Choice::DepthwiseStreamed);
    }
    let [height, width] = geometry.input_size();
    let small = height as u128 * width as u128 <= forward::SHIFTED_MAX_PLANE as u128;
    if shifted::suits(geometry) && small {
        choices.push(Choice::DepthwiseShifted);
    }
    if unpacked::suits(geometry) {
        choices.push(Choice::DepthwiseUnpacked);
    }
    let mut tiers = vec![isa, lanes::narrow_tier(isa)];
    tiers.dedup();
    for tier in tiers {
        let in_l2 = lanes::block_bytes(geometry, tier) <= forward::LANES_BLOCK_BUDGET as u128;
        if lanes::suits(geometry, tier) && in_l2 {
            choices.push(Choice::DepthwiseLanes { tier });
        }
    }
    choices
}

/// The grouped kernels' bodies on every packing the problem has a layout for (the
/// channel-vector body where its partition suits it, never on im2col, which no rule gives
/// it), on the partition the table's rules use.
fn grouped(facts: &Facts<'_>) -> Vec<Choice> {
    let geometry = facts.geometry();
    let grouped_facts = facts.grouped();
    let partition: Partition = grouped_facts.partition;
    let mut choices = Vec::new();
    let mut bodies = vec![Body::Positions];
    if partition.suits_channels(geometry) {
        bodies.insert(0, Body::Channels);
    }
    for body in bodies {
        for packing in [
            Packing::InPlace,
            Packing::KernelColumns,
            Packing::Im2col,
            Packing::PhaseSplit,
        ] {
            let order = match packing {
                Packing::Im2col if body == Body::Channels => continue,
                Packing::PhaseSplit => match &grouped_facts.phase_split {
                    Some(layout) => layout.order,
                    None => continue,
                },
                _ if facts.layout(packing).is_none() => continue,
                _ => VectorOrder::Flat,
            };
            choices.push(Choice::Grouped(GroupedChoice {
                body,
                packing,
                order,
                partition,
            }));
        }
    }
    choices
}
