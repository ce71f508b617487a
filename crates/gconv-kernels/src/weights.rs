//! [`Weights`]: a convolution's weight and bias, kept once, and the orders the kernels read
//! them in, each packed once and shared by every plan that reads it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gconv_shape::Geometry;

use crate::simd::Element;

/// A convolution's weight (`[C_out, C_in/g, kH, kW]`, flat) and optional bias (`[C_out]`),
/// shared by the plans of several input shapes.
///
/// A kernel reads the weights in an order of its own (the output channels of each register
/// block side by side, tap by tap; the block a tile's or a vector's width). The first plan that needs an order packs it;
/// every later plan that needs the same order shares it, so a convolution run on many input
/// sizes packs its weights once per order, not once per size. Kernels that read the weights
/// as given share the caller's copy. An order no plan reads any more is dropped when the next
/// one is packed.
///
/// ```
/// use gconv_kernels::{KernelPlan, Options, Weights};
/// use gconv_shape::Conv2dParams;
///
/// let params = Conv2dParams::new(32, 64, 3).groups(4);
/// let weight = vec![0.5f32; 64 * 8 * 3 * 3];
/// let bias = vec![0.0f32; 64];
/// let weights = Weights::new(&weight, Some(&bias));
/// // Two batch sizes, one packing of the weights.
/// let one = KernelPlan::with_weights(&params.geometry([1, 32, 14, 14])?, &weights, Options::default())?;
/// let four = KernelPlan::with_weights(&params.geometry([4, 32, 14, 14])?, &weights, Options::default())?;
/// assert!(weights.packed_orders() <= 1); // none if the kernel reads the weights as given
/// # let _ = (one, four);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Weights<T> {
    weight: Arc<[T]>,
    bias: Option<Arc<[T]>>,
    /// The orders packed so far, each keyed by what determines it.
    packed: Mutex<Vec<(Key, Arc<[T]>)>>,
}

/// An order the kernels read weights or bias in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Order {
    /// The bias per output channel, zeros without one (asked for only without one).
    ZeroBias,
    /// Chunks of output channels (in order), each split into register blocks of these
    /// widths, each block `[tap][channel]` (make it with [`Order::blocks`]); the
    /// channels-in-lanes kernel's `[block][tap][lane]` is blocks of one vector's lanes.
    Blocks(Vec<usize>),
}

impl Order {
    /// Chunks split into register blocks of `widths`, with the widths reduced to their
    /// shortest repeating run: chunks of 64 channels in four blocks of 16 are packed as
    /// chunks of 16 are (every block one after the other), so plans that chunk the channels
    /// differently share one packing.
    pub fn blocks(mut widths: Vec<usize>) -> Order {
        let period = (1..=widths.len())
            .find(|&period| {
                widths.len().is_multiple_of(period)
                    && widths
                        .iter()
                        .zip(widths.iter().cycle().skip(period))
                        .all(|(a, b)| a == b)
            })
            .unwrap_or(widths.len());
        widths.truncate(period);
        Order::Blocks(widths)
    }
}

/// What a packed order is made from besides the weights: the order, and the weight's
/// dimensions as the order sees them (the same weight length read as other dimensions
/// packs differently).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    order: Order,
    out_channels: usize,
    taps: usize,
}

impl<T: Element> Weights<T> {
    /// Keeps a copy of `weight` and `bias`; each plan made with them checks their lengths
    /// against its geometry.
    pub fn new(weight: &[T], bias: Option<&[T]>) -> Weights<T> {
        Weights {
            weight: weight.into(),
            bias: bias.map(Into::into),
            packed: Mutex::new(Vec::new()),
        }
    }

    /// The weight, `[C_out, C_in/g, kH, kW]` flat.
    pub fn weight(&self) -> &[T] {
        &self.weight
    }

    /// The bias, `[C_out]`, if there is one.
    pub fn bias(&self) -> Option<&[T]> {
        self.bias.as_deref()
    }

    /// Orders packed and still read by a plan (or not yet dropped): what the plans made with
    /// these weights hold besides the weights themselves. Without a bias, the zeros that
    /// stand in for it count as one.
    pub fn packed_orders(&self) -> usize {
        self.packed().len()
    }

    /// The weight as given, shared.
    pub(crate) fn as_given(&self) -> Arc<[T]> {
        Arc::clone(&self.weight)
    }

    /// The bias per output channel of `geometry`, zeros without one, shared.
    pub(crate) fn bias_or_zeros(&self, geometry: &Geometry) -> Arc<[T]> {
        match &self.bias {
            Some(bias) => Arc::clone(bias),
            None => self.packed_in(Order::ZeroBias, geometry),
        }
    }

    /// The weights in `order` for the dimensions of `geometry` (whose weight length the plan
    /// has checked): packed on the first request, shared after.
    pub(crate) fn packed_in(&self, order: Order, geometry: &Geometry) -> Arc<[T]> {
        let key = Key {
            order,
            out_channels: geometry.out_channels(),
            taps: geometry.reduction_len(),
        };
        let mut packed = self.packed();
        if let Some((_, values)) = packed.iter().find(|(held, _)| *held == key) {
            return Arc::clone(values);
        }
        // Orders only this list still holds belong to plans that are gone.
        packed.retain(|(_, values)| Arc::strong_count(values) > 1);
        let values: Arc<[T]> = self.pack(&key).into();
        packed.push((key, Arc::clone(&values)));
        values
    }

    /// Drops the orders no plan reads any more (those of candidates a measured plan timed
    /// and let go).
    pub(crate) fn release_unread(&self) {
        self.packed()
            .retain(|(_, values)| Arc::strong_count(values) > 1);
    }

    /// The weights (or zero bias) in the order of `key`.
    fn pack(&self, key: &Key) -> Vec<T> {
        let Key {
            order,
            out_channels,
            taps,
        } = key;
        let (out_channels, taps) = (*out_channels, *taps);
        let widths = match order {
            Order::ZeroBias => return vec![T::ZERO; out_channels],
            Order::Blocks(widths) => widths,
        };
        let mut packed = Vec::with_capacity(self.weight.len());
        let chunk: usize = widths.iter().sum();
        for chunk_start in (0..out_channels).step_by(chunk.max(1)) {
            let mut first = chunk_start;
            for &width in widths {
                for tap in 0..taps {
                    let channels = first..first + width;
                    packed.extend(channels.map(|channel| self.weight[channel * taps + tap]));
                }
                first += width;
            }
        }
        packed
    }

    fn packed(&self) -> MutexGuard<'_, Vec<(Key, Arc<[T]>)>> {
        // The list is whole between any two statements that change it: a panic elsewhere
        // while it was locked leaves nothing to repair.
        self.packed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Element> fmt::Debug for Weights<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let orders: Vec<Order> = self
            .packed()
            .iter()
            .map(|(key, _)| key.order.clone())
            .collect();
        f.debug_struct("Weights")
            .field("weight_len", &self.weight.len())
            .field("bias_len", &self.bias.as_ref().map(|bias| bias.len()))
            .field("packed", &orders)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::Conv2dParams;

    /// 4 output channels of 2 taps each: weight `10·channel + tap`.
    fn four_by_two() -> (Weights<f32>, Geometry) {
        let weight: Vec<f32> = (0..4)
            .flat_map(|channel| (0..2).map(move |tap| (10 * channel + tap) as f32))
            .collect();
        let geometry = Conv2dParams::new(2, 4, [1, 1])
            .bias(false)
            .geometry([1, 2, 3, 3])
            .unwrap();
        (Weights::new(&weight, None), geometry)
    }

    #[test]
    fn orders_are_packed_as_the_kernels_read_them() {
        let (weights, geometry) = four_by_two();
        // Chunks of 4 channels split 3 + 1: channels 0-2 tap by tap, then channel 3.
        let blocks = weights.packed_in(Order::blocks(vec![3, 1]), &geometry);
        assert_eq!(*blocks, [0., 10., 20., 1., 11., 21., 30., 31.]);
        // Chunks of 2 channels, one block each.
        let pairs = weights.packed_in(Order::blocks(vec![2]), &geometry);
        assert_eq!(*pairs, [0., 10., 1., 11., 20., 30., 21., 31.]);
        // Chunks of 4 in two blocks of 2: the same order, shared.
        let chunks_of_four = weights.packed_in(Order::blocks(vec![2, 2]), &geometry);
        assert!(Arc::ptr_eq(&pairs, &chunks_of_four));
        // Blocks of 4 lanes: every channel tap by tap.
        let lanes = weights.packed_in(Order::blocks(vec![4]), &geometry);
        assert_eq!(*lanes, [0., 10., 20., 30., 1., 11., 21., 31.]);
        assert_eq!(*weights.bias_or_zeros(&geometry), [0.; 4]);
        assert_eq!(*weights.as_given(), *weights.weight());
    }

    #[test]
    fn block_widths_reduce_to_their_shortest_repeating_run() {
        assert_eq!(Order::blocks(vec![16; 8]), Order::Blocks(vec![16]));
        assert_eq!(Order::blocks(vec![4, 4, 2]), Order::Blocks(vec![4, 4, 2]));
        assert_eq!(Order::blocks(vec![6, 2, 6, 2]), Order::Blocks(vec![6, 2]));
        assert_eq!(Order::blocks(vec![6, 2, 6]), Order::Blocks(vec![6, 2, 6]));
        assert_eq!(Order::blocks(vec![3]), Order::Blocks(vec![3]));
    }

    #[test]
    fn an_order_is_packed_once_and_dropped_when_no_plan_reads_it() {
        let (weights, geometry) = four_by_two();
        let first = weights.packed_in(Order::blocks(vec![2]), &geometry);
        let again = weights.packed_in(Order::blocks(vec![2]), &geometry);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(weights.packed_orders(), 1);
        // The same weight length read as 2 channels of 4 taps is another packing.
        let other_dimensions = Conv2dParams::new(4, 2, [1, 1])
            .bias(false)
            .geometry([1, 4, 3, 3])
            .unwrap();
        let reshaped = weights.packed_in(Order::blocks(vec![2]), &other_dimensions);
        assert_eq!(
            *reshaped,
            [0, 4, 1, 5, 2, 6, 3, 7].map(|i| weights.weight()[i])
        );
        assert!(!Arc::ptr_eq(&first, &reshaped));
        assert_eq!(weights.packed_orders(), 2);
        drop((first, again, reshaped));
        let _lanes = weights.packed_in(Order::blocks(vec![4]), &geometry);
        assert_eq!(weights.packed_orders(), 1, "{weights:?}");
    }

    #[test]
    fn a_given_bias_is_shared_not_packed() {
        let bias = [1.0f32, 2.0, 3.0, 4.0];
        let weights = Weights::new(&[0.0; 8], Some(&bias));
        let geometry = Conv2dParams::new(2, 4, [1, 1])
            .geometry([1, 2, 3, 3])
            .unwrap();
        assert_eq!(*weights.bias_or_zeros(&geometry), bias);
        assert_eq!(weights.packed_orders(), 0);
    }
}
