//! The forward pass's selection table: [`RULES`], tried in order, the first that applies
//! choosing the kernel. Each rule's measurements are in `TUNING.md` under its name.
//!
//! | # | rule | chooses |
//! |---|---|---|
//! | 1 | `depthwise-streamed-3x3-stride-2` | streamed depthwise |
//! | 2 | `depthwise-streamed-5x5-stride-2` | streamed depthwise |
//! | 3 | `depthwise-lanes-short-rows` | channels-in-lanes depthwise |
//! | 4 | `depthwise-streamed-stride-1` | streamed depthwise |
//! | 5 | `depthwise-streamed-stride-1-short-bands` | streamed depthwise |
//! | 6 | `depthwise-shifted` | shifted-plane depthwise |
//! | 7 | `depthwise-unpacked-stride-2` | unpacked depthwise |
//! | 8 | `depthwise-unpacked-stride-1` | unpacked depthwise |
//! | 9 | `depthwise-lanes` | channels-in-lanes depthwise |
//! | 10 | `grouped-channels-in-place` | channel-vector body, input read in place |
//! | 11 | `grouped-channels-columns` | channel-vector body, one copy per kernel column |
//! | 12 | `grouped-channels-phase-split` | channel-vector body, phase-split packing |
//! | 13 | `grouped-positions-in-place` | flat body, input read in place |
//! | 14 | `grouped-positions-im2col` | flat body, im2col |
//! | 15 | `grouped-positions-phase-split` | flat body, phase-split packing (every problem) |
//!
//! Rules read the CPU class ([`crate::CpuClass`]) only on the AVX-512 tier, and there only in
//! the tier the channels-in-lanes kernel runs on (`lanes::tier_for`): 512-bit lanes on a
//! CPU that runs them at full width, 256-bit lanes on one that splits them.

use gconv_shape::Geometry;

use super::{Body, Choice, Facts, GroupedChoice, Problem, Rule, Selection, too_large};
use crate::kernels::depthwise::{lanes, shifted, streamed, unpacked};
use crate::pack::layout::{Packing, VectorOrder};
use crate::{Error, Isa};

/// The forward pass's rules, in the order they are tried.
pub static RULES: [Rule; 15] = [
    Rule {
        name: "depthwise-streamed-3x3-stride-2",
        reason: "every input row is loaded once per band of columns, deinterleaved into the \
                 window's taps, the shared row carried to the next output row (but for rows \
                 of at most half a vector where 16 lanes run at full width)",
        choose: |facts| {
            Ok(streamed_if(facts, |geometry, _| {
                window(geometry) == (2, 3) && !short_rows_at_full_width(facts)
            }))
        },
    },
    Rule {
        name: "depthwise-streamed-5x5-stride-2",
        reason: "AVX-512, rows wider than half a vector: each padded row is added to the \
                 up to three output rows whose windows hold it, sums rolling down",
        choose: |facts| {
            Ok(streamed_if(facts, |geometry, isa| {
                let [_, out_w] = geometry.output_size();
                window(geometry) == (2, 5) && isa == Isa::X86_64V4 && 2 * out_w > isa.lanes()
            }))
        },
    },
    Rule {
        name: "depthwise-lanes-short-rows",
        reason: "AVX-512, stride 1, rows that would fill at most half of the streamed kernel's \
                 vectors (two thirds for 7x7 windows, any share where 16 lanes of them fit L1 \
                 at full width), and 3x3 stride 2 on such rows at full width: channels in \
                 lanes fill every lane",
        choose: |facts| {
            let Problem {
                geometry, isa, cpu, ..
            } = facts.problem;
            let [_, out_w] = geometry.output_size();
            let lanes = isa.lanes();
            let filled = out_w.div_ceil(lanes) * lanes;
            let long_window = geometry.reduction_len() >= 49;
            let short = 2 * out_w <= filled
                || (long_window && 3 * out_w < 2 * filled)
                || (long_window && lanes::tier_for(geometry, isa, cpu) == Isa::X86_64V4);
            let stride_one = isa == Isa::X86_64V4
                && geometry.stride() == [1, 1]
                && short
                && lanes::suits(geometry, lanes::narrow_tier(isa))
                && lanes::block_bytes(geometry, lanes::narrow_tier(isa))
                    <= LANES_BLOCK_BUDGET as u128;
            let stride_two = window(geometry) == (2, 3) && short_rows_at_full_width(facts);
            Ok((stride_one || stride_two).then(|| lanes_choice(facts)))
        },
    },
    Rule {
        name: "depthwise-streamed-stride-1",
        reason: "AVX-512: each input row is loaded once (K shifted loads) and added to the K \
                 rolling sums of the output rows that read it, all in registers",
        choose: |facts| {
            Ok(streamed_if(facts, |geometry, isa| {
                geometry.stride() == [1, 1] && isa == Isa::X86_64V4
            }))
        },
    },
    Rule {
        name: "depthwise-streamed-stride-1-short-bands",
        reason: "below AVX-512, where a band's rolling sums fit beside its taps in sixteen \
                 registers and the rows fill four fifths of their vectors; dilated windows \
                 of up to 5x5 on AVX2 (masked loads) where the rows are one band; on AVX2, \
                 5xN and 7xN windows on rows that fill 85 % of their vectors, sums spilled, \
                 where the unpacked kernel would not share their rows",
        choose: |facts| {
            Ok(streamed_if(facts, |geometry, isa| {
                let [_, out_w] = geometry.output_size();
                let side = geometry.kernel_size()[0];
                let lanes = isa.lanes();
                let vectors = out_w.div_ceil(lanes);
                let undilated = geometry.dilation() == [1, 1];
                let dilated_fits =
                    isa == Isa::X86_64V3 && vectors <= streamed::MAX_BAND && side <= 5;
                let in_registers = (undilated || dilated_fits)
                    && vectors * (side - 1) <= 12
                    && 5 * out_w >= 4 * lanes * vectors;
                let tall_spilled = isa == Isa::X86_64V3
                    && undilated
                    && side >= 5
                    && 20 * out_w >= 17 * lanes * vectors
                    && !unpacked_applies(geometry, isa, 1);
                geometry.stride() == [1, 1] && (in_registers || tall_spilled)
            }))
        },
    },
    Rule {
        name: "depthwise-shifted",
        reason: "AVX-512, planes of up to 32x32 whose output is the input's size, windows \
                 the streamed kernel leaves (not square, or past 7x7): every tap is the input \
                 plane shifted, read whole under a lane mask",
        choose: |facts| {
            let Problem { geometry, isa, .. } = facts.problem;
            let [height, width] = geometry.input_size();
            let small = height as u128 * width as u128 <= SHIFTED_MAX_PLANE as u128;
            let applies = isa == Isa::X86_64V4 && shifted::suits(geometry) && small;
            Ok(applies.then_some(Choice::DepthwiseShifted))
        },
    },
    Rule {
        name: "depthwise-unpacked-stride-2",
        reason: "stride 2, windows of three rows (five on AVX-512) sharing their input rows, \
                 on planes too large for a block of channels in lanes to stay in L1",
        choose: |facts| unpacked_at(facts, 2),
    },
    Rule {
        name: "depthwise-unpacked-stride-1",
        reason: "stride 1, at most nine taps or a 5xN or 7xN window sharing its input rows, \
                 on planes too large for a block of channels in lanes to stay in L1",
        choose: |facts| unpacked_at(facts, 1),
    },
    Rule {
        name: "depthwise-lanes",
        reason: "small or strided planes whose padded block of channels in lanes fits L1, or \
                 where vectors of positions would waste a tenth of their lanes, within L2",
        choose: |facts| {
            let Problem { geometry, isa, .. } = facts.problem;
            let applies =
                lanes::suits(geometry, lanes::narrow_tier(isa)) && lanes_pay(geometry, isa);
            Ok(applies.then(|| lanes_choice(facts)))
        },
    },
    Rule {
        name: "grouped-channels-in-place",
        reason: "long reductions of 1x1 groups, or planes under half a vector: output \
                 channels in lanes, each input broadcast against a block of them, the input \
                 read where it lies",
        choose: |facts| channels_on(facts, Packing::InPlace),
    },
    Rule {
        name: "grouped-channels-columns",
        reason: "long reductions where a copy per kernel column, computing no padding column, \
                 costs less than the phase split's discarded columns",
        choose: |facts| channels_on_if_cheaper(facts, Packing::KernelColumns),
    },
    Rule {
        name: "grouped-channels-phase-split",
        reason: "long reductions: output channels in lanes, taps in L1-sized chunks, no lane \
                 idle whatever the plane's width",
        choose: |facts| channels_on(facts, Packing::PhaseSplit),
    },
    Rule {
        name: "grouped-positions-in-place",
        reason: "1x1 windows with stride 1 and no padding: the input already is the packed \
                 layout, read where it lies",
        choose: |facts| Ok(positions_on(facts, Packing::InPlace)),
    },
    Rule {
        name: "grouped-positions-im2col",
        reason: "where the phase split's discarded columns cost more than copying every \
                 tap's window, and the copy stays in L2",
        choose: |facts| {
            let Some(phase_split) = &facts.grouped().phase_split else {
                return Err(too_large());
            };
            let Some(im2col) = facts.layout(Packing::Im2col) else {
                return Ok(None);
            };
            let pays = facts.task_cost().im2col_pays(phase_split, &im2col);
            Ok(pays.then(|| positions(facts, Packing::Im2col, VectorOrder::Flat)))
        },
    },
    Rule {
        name: "grouped-positions-phase-split",
        reason: "every other problem: M output channels x V vectors of flat positions over \
                 the input dealt into zero-padded stride phases, every tap a shifted load",
        choose: |facts| {
            let phase_split = facts.grouped().phase_split.as_ref().ok_or(too_large())?;
            Ok(Some(positions(
                facts,
                Packing::PhaseSplit,
                phase_split.order,
            )))
        },
    },
];

/// The forward kernel for `problem`, and the rule that chose it.
pub(crate) fn select(problem: Problem<'_>) -> Result<Selection, Error> {
    super::select(&RULES, problem)
}

/// Positions of the largest plane the shifted-plane kernel runs.
pub(crate) const SHIFTED_MAX_PLANE: usize = 32 * 32;

/// Bytes of a padded block of channels in lanes from which the unpacked kernel beats the
/// channels-in-lanes one on 3x3 layers: between 26x26 and 30x30 padded pixels of 8 lanes.
const UNPACKED_MIN_BLOCK: usize = 24 * 1024;

/// Bytes of a padded input block below which the channels-in-lanes kernel wins whatever the
/// flat kernel wastes: its block stays in L1 (32x32 padded pixels of 8 lanes).
const LANES_L1_BUDGET: usize = 32 * 1024;

/// Bytes the channels-in-lanes kernel's padded input block may take: what stays in L2.
pub(crate) const LANES_BLOCK_BUDGET: usize = 256 * 1024;

/// `(stride, side)` of a square window with the same stride on both axes, else `(0, 0)`.
fn window(geometry: &Geometry) -> (usize, usize) {
    match (geometry.stride(), geometry.kernel_size()) {
        ([s, t], [k, l]) if s == t && k == l => (s, k),
        _ => (0, 0),
    }
}

/// Whether output rows fill at most half of an AVX-512 vector and the channels-in-lanes
/// kernel would run the problem with 16 lanes at full width (`lanes::tier_for`).
fn short_rows_at_full_width(facts: &Facts<'_>) -> bool {
    let Problem {
        geometry, isa, cpu, ..
    } = facts.problem;
    let [_, out_w] = geometry.output_size();
    isa == Isa::X86_64V4
        && 2 * out_w <= isa.lanes()
        && lanes::tier_for(geometry, isa, cpu) == Isa::X86_64V4
}

/// The streamed depthwise kernel where it can run the problem and `pays` says so.
fn streamed_if(facts: &Facts<'_>, pays: impl Fn(&Geometry, Isa) -> bool) -> Option<Choice> {
    let Problem { geometry, isa, .. } = facts.problem;
    (streamed::suits(geometry) && pays(geometry, isa)).then_some(Choice::DepthwiseStreamed)
}

/// The channels-in-lanes kernel on the tier that suits the problem and the CPU class.
fn lanes_choice(facts: &Facts<'_>) -> Choice {
    let Problem {
        geometry, isa, cpu, ..
    } = facts.problem;
    Choice::DepthwiseLanes {
        tier: lanes::tier_for(geometry, isa, cpu),
    }
}

/// The unpacked depthwise kernel for a problem of stride `stride` (both axes) where it pays.
fn unpacked_at(facts: &Facts<'_>, stride: usize) -> Result<Option<Choice>, Error> {
    let Problem { geometry, isa, .. } = facts.problem;
    Ok(unpacked_applies(geometry, isa, stride).then_some(Choice::DepthwiseUnpacked))
}

/// Whether the unpacked depthwise kernel runs `geometry` at stride `stride` (both axes) on
/// `isa`: it suits the problem and pays there.
fn unpacked_applies(geometry: &Geometry, isa: Isa, stride: usize) -> bool {
    let pays = match stride {
        1 => unpacked_stride_one_pays,
        _ => unpacked_stride_two_pays,
    };
    unpacked::suits(geometry) && geometry.stride() == [stride, stride] && pays(geometry, isa)
}

/// Stride 2 on the unpacked kernel: windows of three rows without vertical dilation (and on
/// AVX-512 five) share their input rows; its deinterleaves cost AVX2 more, so there it starts
/// at larger planes and leaves 5xN windows to the other kernels.
fn unpacked_stride_two_pays(geometry: &Geometry, isa: Isa) -> bool {
    let [kernel_h, _] = geometry.kernel_size();
    let dilated = geometry.dilation()[0] != 1;
    let shared = !dilated && (kernel_h == 3 || (kernel_h == 5 && isa == Isa::X86_64V4));
    let min_block = match (isa, kernel_h) {
        (Isa::X86_64V4, 3) => UNPACKED_MIN_BLOCK,
        _ => 4 * UNPACKED_MIN_BLOCK,
    };
    shared && lanes::block_bytes(geometry, lanes::narrow_tier(isa)) > min_block as u128
}

/// Stride 1 on the unpacked kernel: at most nine taps, or a 5xN or 7xN window without
/// vertical dilation that shares its input rows where the padding rows (done one at a time)
/// are at most a sixth of the plane; past that the flat kernel's packing is small against its
/// arithmetic.
fn unpacked_stride_one_pays(geometry: &Geometry, isa: Isa) -> bool {
    let [kernel_h, _] = geometry.kernel_size();
    let [out_h, _] = geometry.output_size();
    let tall_shared =
        matches!(kernel_h, 5 | 7) && geometry.dilation()[0] == 1 && 6 * (kernel_h - 1) <= out_h;
    (geometry.reduction_len() <= 9 || tall_shared)
        && lanes::block_bytes(geometry, lanes::narrow_tier(isa)) > UNPACKED_MIN_BLOCK as u128
}

/// Whether the channels-in-lanes kernel should run `geometry` rather than the flat kernel on
/// `isa`: where its padded block of channels fits in L1, where the flat kernel would spend
/// more than a tenth of its lanes on padding columns and tails (a quarter past 16 taps, whose
/// weights no longer stay in registers), or where the flat packing would be strided, as long
/// as the block fits in L2.
fn lanes_pay(geometry: &Geometry, isa: Isa) -> bool {
    let [out_h, out_w] = geometry.output_size();
    let [_, width] = geometry.input_size();
    let padding = geometry.padding();
    let padded_w = width + padding.left + padding.right;
    let block_bytes = lanes::block_bytes(geometry, lanes::narrow_tier(isa));
    let flat_lanes = isa.lanes() as u128;
    let row_stride = padded_w.div_ceil(geometry.stride()[1]) as u128;
    let flat_positions = (out_h as u128 * row_stride).div_ceil(flat_lanes) * flat_lanes;
    let out_plane = out_h as u128 * out_w as u128;
    let wasteful = if geometry.reduction_len() <= 16 {
        10 * out_plane < 9 * flat_positions
    } else {
        4 * out_plane < 3 * flat_positions
    };
    let strided = geometry.stride() != [1, 1];
    let in_l1 = block_bytes <= LANES_L1_BUDGET as u128;
    (in_l1 || wasteful || strided) && block_bytes <= LANES_BLOCK_BUDGET as u128
}

/// The shortest reduction (`K = C_in/g·kH·kW`) from which the channel-vector body runs where
/// it can, instead of the flat one, on `isa` (`usize::MAX`: never; `TUNING.md`,
/// `grouped-channels-*`).
fn channels_min_reduction(isa: Isa) -> usize {
    match isa {
        Isa::X86_64V4 => 128,
        Isa::X86_64V3 => 64,
        Isa::Portable => usize::MAX,
    }
}

/// Whether the channel-vector body should run the problem: where it can, with a reduction
/// long enough that storing each tile through a transpose is small against its arithmetic,
/// or on a plane of less than half a vector of positions, where the flat body would leave
/// most of its lanes idle whatever the reduction (squeeze-and-excitation's 1x1 planes).
fn channels_preferred(facts: &Facts<'_>) -> bool {
    let geometry = facts.geometry();
    let isa = facts.problem.isa;
    let [out_h, out_w] = geometry.output_size();
    let tiny_plane = isa != Isa::Portable && 2 * out_h * out_w <= isa.lanes();
    facts.grouped().partition.suits_channels(geometry)
        && (geometry.reduction_len() >= channels_min_reduction(isa) || tiny_plane)
}

/// The channel-vector body on `packing`, where it is preferred and `packing` exists for the
/// problem (phase split: an error if it does not).
fn channels_on(facts: &Facts<'_>, packing: Packing) -> Result<Option<Choice>, Error> {
    if !channels_preferred(facts) {
        return Ok(None);
    }
    match packing {
        Packing::PhaseSplit => {
            let phase_split = facts.grouped().phase_split.as_ref().ok_or(too_large())?;
            Ok(Some(grouped(
                facts,
                Body::Channels,
                packing,
                phase_split.order,
            )))
        }
        _ => Ok(facts
            .layout(packing)
            .map(|_| grouped(facts, Body::Channels, packing, VectorOrder::Flat))),
    }
}

/// The channel-vector body on `packing` where it is preferred and `packing` costs less than
/// the phase split.
fn channels_on_if_cheaper(facts: &Facts<'_>, packing: Packing) -> Result<Option<Choice>, Error> {
    if !channels_preferred(facts) {
        return Ok(None);
    }
    let phase_split = facts.grouped().phase_split.as_ref().ok_or(too_large())?;
    let Some(layout) = facts.layout(packing) else {
        return Ok(None);
    };
    let pays = facts.task_cost().columns_pay(phase_split, &layout);
    Ok(pays.then(|| grouped(facts, Body::Channels, packing, VectorOrder::Flat)))
}

/// The flat body on `packing`, if that layout exists for the problem.
fn positions_on(facts: &Facts<'_>, packing: Packing) -> Option<Choice> {
    facts
        .layout(packing)
        .map(|_| positions(facts, packing, VectorOrder::Flat))
}

/// The flat body on `packing` in `order`.
fn positions(facts: &Facts<'_>, packing: Packing, order: VectorOrder) -> Choice {
    grouped(facts, Body::Positions, packing, order)
}

/// The grouped kernels with `body` on `packing` in `order`, on the problem's partition.
fn grouped(facts: &Facts<'_>, body: Body, packing: Packing, order: VectorOrder) -> Choice {
    Choice::Grouped(GroupedChoice {
        body,
        packing,
        order,
        partition: facts.grouped().partition,
    })
}
