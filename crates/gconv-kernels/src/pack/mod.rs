//! Where a group's input lives while it is convolved: the packed layouts that turn every tap
//! of every stride and dilation into a contiguous shifted load, how they are filled, and how
//! tall their bands of output rows are.
//!
//! * [`layout`] — the layouts (phase split, per kernel column, im2col, in place) and the map
//!   from flat positions back to output positions;
//! * `packing` — filling a layout from the input, band by band;
//! * [`copy`] — the vector copies packing is made of;
//! * [`bands`] — band heights.

pub(crate) mod bands;
pub(crate) mod copy;
pub(crate) mod layout;
mod packing;
