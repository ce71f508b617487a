//! Choosing a kernel: a pure function from the problem (geometry, tier, threads) to a
//! description of what runs (`Choice`) and the rule that chose it, apart from building it.
//!
//! Each pass has its table of rules, tried in order, the first that applies choosing: the
//! forward pass's is [`forward::RULES`]. Every rule says in one line why it wins where it
//! applies; the measurements behind its thresholds are in the crate's `TUNING.md`, under the
//! rule's name. Nothing here looks at the CPU the program runs on, so a choice can be worked
//! out for any tier on any machine: the golden selection test (`select/golden.rs`) records
//! the kernel every published layer and a set of edge shapes get on every tier, so that a
//! change of choice is a reviewed diff of `selection/forward.txt`.

use std::cell::OnceCell;
use std::fmt;

use gconv_shape::Geometry;

use crate::kernels::depthwise::{lanes, shifted, unpacked};
use crate::kernels::grouped::tiles::tiles_of;
use crate::pack::layout::{Layout, Packing, VectorOrder};
use crate::{CpuClass, Error, Family, Isa};

pub(crate) mod candidates;
pub mod forward;
#[cfg(test)]
mod golden;
pub(crate) mod grouped;

use grouped::Partition;

/// What a kernel is chosen for: the convolution, the tier it will run on and its threads.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// The validated convolution.
    pub geometry: &'a Geometry,
    /// The tier the plan runs on.
    pub isa: Isa,
    /// The class of CPU the kernel is chosen for.
    pub cpu: CpuClass,
    /// The plan's threads.
    pub threads: usize,
}

/// Which body of the grouped kernels computes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// `M` output channels × `V` vectors of positions (`kernels::grouped::positions`).
    Positions,
    /// `2·LANES` (or `LANES`) channels in lanes × `P` positions
    /// (`kernels::grouped::channels`).
    Channels,
}

/// The grouped kernels as chosen: body, packing, vector order and partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupedChoice {
    pub body: Body,
    pub packing: Packing,
    pub order: VectorOrder,
    pub partition: Partition,
}

/// What runs: a kernel, with every parameter of it that the problem does not fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The grouped kernels (every family; `kernels::grouped`).
    Grouped(GroupedChoice),
    /// Depthwise, bands of output columns streamed down the plane
    /// (`kernels::depthwise::streamed`).
    DepthwiseStreamed,
    /// Depthwise on small planes of the input's size, every tap a shifted read
    /// (`kernels::depthwise::shifted`).
    DepthwiseShifted,
    /// Depthwise, tiles of output rows read straight from the input rows
    /// (`kernels::depthwise::unpacked`).
    DepthwiseUnpacked,
    /// Depthwise, channels in lanes (`kernels::depthwise::lanes`), on `tier`: the plan's, or
    /// on AVX-512 its 256-bit subset ([`lanes::tier_for`]).
    DepthwiseLanes {
        /// The tier whose vectors hold the channels.
        tier: Isa,
    },
}

#[cfg(test)]
impl GroupedChoice {
    /// The grouped kernels forced onto `body` and `packing` (the vector order `order`, or
    /// the cheaper one), whatever the rules would choose: for tests of each body and
    /// packing. Whether it can run is checked when it is built.
    pub(crate) fn forced(
        problem: Problem<'_>,
        body: Body,
        packing: Packing,
        order: Option<VectorOrder>,
    ) -> Result<GroupedChoice, Error> {
        let Problem {
            geometry,
            isa,
            threads,
            ..
        } = problem;
        let partition = Partition::new(geometry, isa, threads, body == Body::Channels);
        let order = match (packing, order) {
            (Packing::PhaseSplit, None) => {
                let bands = partition.bands(geometry, isa);
                grouped::phase_split(geometry, &bands)
                    .ok_or(too_large())?
                    .order
            }
            (Packing::PhaseSplit, Some(order)) => order,
            _ => VectorOrder::Flat,
        };
        Ok(GroupedChoice {
            body,
            packing,
            order,
            partition,
        })
    }
}

/// The error of a problem whose planes the kernels cannot index.
pub(crate) fn too_large() -> Error {
    Error::TooLarge {
        what: "an output plane or a packed input channel",
    }
}

impl Choice {
    /// What runs and how it is tiled, e.g. `dwconv-3x3s2d1-streamed-1c16w-x86_64_v4`: family,
    /// kernel size, stride, dilation, input packing (`direct`: padded stride phases, every tap
    /// a shifted view; `rows`: the same, vectors starting at every row; `columns`: one copy
    /// per kernel column; `im2col`: one copied window per tap; `inplace`: none; or the
    /// depthwise kernel's name), the largest register tile (output channels × output
    /// positions) and the tier.
    pub(crate) fn kernel_id(&self, geometry: &Geometry, isa: Isa) -> String {
        let axis = |[height, width]: [usize; 2]| {
            if height == width {
                height.to_string()
            } else {
                format!("{height}x{width}")
            }
        };
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let lanes = isa.lanes();
        let (packing, channels, positions) = match self {
            Choice::Grouped(grouped) => grouped.tile(isa),
            Choice::DepthwiseLanes { tier } => (
                "lanes",
                tier.lanes(),
                lanes::tile_positions(geometry, *tier),
            ),
            Choice::DepthwiseUnpacked => ("unpacked", 1, unpacked::TILE_ROWS * lanes),
            Choice::DepthwiseShifted => ("shifted", 1, shifted::TILE_VECTORS * lanes),
            Choice::DepthwiseStreamed => ("streamed", 1, lanes),
        };
        format!(
            "{}-{kernel_h}x{kernel_w}s{}d{}-{packing}-{channels}c{positions}w-{}",
            Family::of(geometry),
            axis(geometry.stride()),
            axis(geometry.dilation()),
            isa.level()
        )
    }
}

impl GroupedChoice {
    /// The kernel id's packing name and largest register tile (channels, positions).
    fn tile(&self, isa: Isa) -> (&'static str, usize, usize) {
        let tiles = tiles_of(isa);
        match self.body {
            Body::Channels => {
                let packing = match self.packing {
                    Packing::KernelColumns => "columns",
                    Packing::InPlace => "inplace",
                    Packing::PhaseSplit | Packing::Im2col => "direct",
                };
                (packing, 2 * isa.lanes(), tiles.channel_positions)
            }
            Body::Positions => {
                let blocks = grouped::blocks(self.partition.chunk_channels, &tiles);
                let channels = blocks.first().copied().unwrap_or(1);
                let packing = match (self.packing, self.order) {
                    (Packing::PhaseSplit, VectorOrder::Flat) => "direct",
                    (Packing::PhaseSplit, VectorOrder::Rows) => "rows",
                    (Packing::Im2col, _) => "im2col",
                    (Packing::KernelColumns, _) => "columns",
                    (Packing::InPlace, _) => "inplace",
                };
                let positions = tiles.vectors_for(channels) * isa.lanes();
                (packing, channels, positions)
            }
        }
    }
}

/// One rule of a pass's selection table: where it applies, what it chooses there, and why.
pub struct Rule {
    name: &'static str,
    reason: &'static str,
    choose: fn(&Facts<'_>) -> Result<Option<Choice>, Error>,
}

impl Rule {
    /// The rule's name, as `TUNING.md` and the golden selection file know it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Why the kernel it chooses wins where it applies, in one line.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl Rule {
    /// The rule a measured choice other than the table's names (no problem selects it).
    pub(crate) const fn measured() -> Rule {
        Rule {
            name: "measured",
            reason: "timed fastest of the candidate kernels on this CPU (Planning::Measure), \
                     now or in the wisdom it read",
            choose: never,
        }
    }
}

/// A rule that applies to no problem.
fn never(_: &Facts<'_>) -> Result<Option<Choice>, Error> {
    Ok(None)
}

#[cfg(test)]
impl Rule {
    /// The rule a test's forced selection names.
    pub(crate) const fn forced() -> Rule {
        Rule {
            name: "forced",
            reason: "a test forced this kernel",
            choose: never,
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A choice and the rule that made it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selection {
    pub choice: Choice,
    pub rule: &'static Rule,
}

/// What the rules read: the problem, and what the grouped rules share, worked out once.
pub(crate) struct Facts<'a> {
    pub problem: Problem<'a>,
    grouped: OnceCell<GroupedFacts>,
}

/// The grouped kernels' partition, and their phase-split layout (`None`: planes too large).
pub(crate) struct GroupedFacts {
    pub partition: Partition,
    pub phase_split: Option<Layout>,
}

impl<'a> Facts<'a> {
    fn new(problem: Problem<'a>) -> Facts<'a> {
        Facts {
            problem,
            grouped: OnceCell::new(),
        }
    }

    /// The problem's geometry.
    pub fn geometry(&self) -> &'a Geometry {
        self.problem.geometry
    }

    /// The grouped kernels' partition and phase-split layout.
    pub fn grouped(&self) -> &GroupedFacts {
        self.grouped.get_or_init(|| {
            let Problem {
                geometry,
                isa,
                threads,
                ..
            } = self.problem;
            let partition = Partition::new(geometry, isa, threads, false);
            let phase_split = grouped::phase_split(geometry, &partition.bands(geometry, isa));
            GroupedFacts {
                partition,
                phase_split,
            }
        })
    }

    /// The grouped kernels' layout of `packing` (flat), if it exists for this problem.
    pub fn layout(&self, packing: Packing) -> Option<Layout> {
        let Problem { geometry, isa, .. } = self.problem;
        let bands = self.grouped().partition.bands(geometry, isa);
        bands.layout(geometry, packing, VectorOrder::Flat)
    }

    /// What a task of the grouped kernels' partition costs on a layout.
    pub fn task_cost(&self) -> grouped::TaskCost<'a> {
        grouped::TaskCost {
            geometry: self.problem.geometry,
            chunk_channels: self.grouped().partition.chunk_channels,
        }
    }
}

/// The first rule of `rules` that applies to `problem`, and its choice.
pub(crate) fn select(rules: &'static [Rule], problem: Problem<'_>) -> Result<Selection, Error> {
    let facts = Facts::new(problem);
    for rule in rules {
        if let Some(choice) = (rule.choose)(&facts)? {
            return Ok(Selection { choice, rule });
        }
    }
    unreachable!("the last rule of a table applies to every problem")
}
