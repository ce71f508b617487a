//! A shape already set up runs without allocating: counted by a global allocator, in a test
//! binary of its own (no other test's threads allocate meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gconv::{Conv2d, Conv2dParams, Options, Padding};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's promises, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's promises, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's promises, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts the process's team of `threads` and lets its helper threads finish starting: they
/// set themselves up in the background once per process (rayon's workers), which a counter
/// of every thread's allocations would otherwise charge to whichever run came first.
fn start_team(threads: usize) {
    let options = Options::default().threads(threads);
    let conv = Conv2d::new(
        Conv2dParams::new(1, 1, 1),
        [1, 1, 64, 64],
        &[1.0],
        None,
        options,
    )
    .unwrap();
    conv.forward(&[1.0; 64 * 64]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// Every run of a prepared shape, the first included, from any of the shapes set up.
#[test]
fn a_shape_already_set_up_runs_without_allocating() {
    start_team(2);
    let layers = [
        (
            Conv2dParams::new(32, 32, 3)
                .groups(32)
                .padding(Padding::uniform(1)),
            32,
        ),
        (Conv2dParams::new(24, 48, 3).groups(3).stride(2), 24),
        (Conv2dParams::new(64, 64, 1).groups(4), 64),
    ];
    for (params, channels) in layers {
        for threads in [1, 2] {
            let options = Options::default().threads(threads);
            let weight = vec![0.25; params.validate().unwrap().weight_shape().iter().product()];
            let bias = vec![0.5; params.out_channels];
            let conv =
                Conv2d::new(params, [1, channels, 20, 20], &weight, Some(&bias), options).unwrap();
            let shapes = [
                [1, channels, 20, 20],
                [3, channels, 17, 23],
                [2, channels, 40, 9],
            ];
            let buffers: Vec<(Vec<f32>, Vec<f32>)> = shapes
                .iter()
                .map(|&shape| {
                    let output_len = conv.prepare(shape).unwrap().output_len();
                    (vec![1.0; shape.iter().product()], vec![0.0; output_len])
                })
                .collect();
            let mut buffers = buffers;
            for round in 0..3 {
                for (&shape, (input, output)) in shapes.iter().zip(&mut buffers) {
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    conv.run_shaped(shape, input, output).unwrap();
                    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
                    assert_eq!(
                        allocations, 0,
                        "{params:?} on {shape:?}, {threads} threads, round {round}"
                    );
                }
            }
        }
    }
    uneven_groups_run_without_allocating();
}

/// Uneven groups too: every run of every shape set up, with several runs of groups (a
/// sample at a time) and with a residual. (Called from the one test of this binary: two
/// tests would count each other's allocations.)
fn uneven_groups_run_without_allocating() {
    use gconv::{GroupSizes, UnevenConv2d};
    let params = Conv2dParams::new(9, 12, 3).padding(Padding::uniform(1));
    let sizes = GroupSizes::new([1, 1, 1, 6], [2, 2, 2, 6]);
    let weight = vec![0.25; 3 * 2 * 9 + 6 * 6 * 9];
    let bias = vec![0.5; 12];
    for threads in [1, 2] {
        let options = Options::default().threads(threads).residual(true);
        let conv = UnevenConv2d::new(
            params,
            sizes.clone(),
            [1, 9, 20, 20],
            &weight,
            Some(&bias),
            options,
        )
        .unwrap();
        for shape in [[1, 9, 20, 20], [3, 9, 17, 23]] {
            let output_len = conv.prepare(shape).unwrap().output_len();
            let input = vec![1.0; shape.iter().product()];
            let residual = vec![0.5; output_len];
            let mut output = vec![0.0; output_len];
            for round in 0..3 {
                let before = ALLOCATIONS.load(Ordering::SeqCst);
                conv.run_shaped_with_residual(shape, &input, &residual, &mut output)
                    .unwrap();
                let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
                assert_eq!(
                    allocations, 0,
                    "{shape:?}, {threads} threads, round {round}"
                );
            }
        }
    }
}
