//! Which channel each output plane of a depthwise layer belongs to, and which input plane it
//! reads, counted along a task's run of consecutive planes.

/// Output planes `first..` of a depthwise layer, `C_out = C_in · multiplier` per sample: for
/// each, its output channel (its weights and bias) and the input plane of the whole batch it
/// reads, `plane / multiplier`. Counted along rather than divided out per plane: a 7x7 plane
/// is about a hundred cycles of work, and its divisions measured 9 %.
pub(crate) struct PlaneChannels {
    out_channels: usize,
    multiplier: usize,
    channel: usize,
    input_plane: usize,
    copy: usize,
}

impl PlaneChannels {
    /// From output plane `first` on (`out_channels` and `multiplier` at least 1).
    pub fn new(first: usize, out_channels: usize, multiplier: usize) -> PlaneChannels {
        PlaneChannels {
            out_channels,
            multiplier,
            channel: first % out_channels,
            input_plane: first / multiplier,
            copy: first % multiplier,
        }
    }
}

impl Iterator for PlaneChannels {
    /// The plane's output channel and input plane.
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let current = (self.channel, self.input_plane);
        self.channel += 1;
        if self.channel == self.out_channels {
            self.channel = 0;
        }
        self.copy += 1;
        if self.copy == self.multiplier {
            (self.input_plane, self.copy) = (self.input_plane + 1, 0);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_division_gives() {
        for (out_channels, multiplier) in [(1, 1), (6, 1), (6, 2), (6, 3), (4, 4)] {
            for first in 0..3 * out_channels {
                let counted = PlaneChannels::new(first, out_channels, multiplier);
                for (plane, (channel, input_plane)) in (first..first + 40).zip(counted) {
                    assert_eq!(channel, plane % out_channels);
                    assert_eq!(input_plane, plane / multiplier);
                }
            }
        }
    }
}
