//! Uneven groups (`gconv::UnevenConv2d`) against their runs of equal groups run apart, each an
//! ordinary grouped convolution over its own contiguous channels (`runs-apart`): the cost of
//! taking the runs from one NCHW tensor, a sample at a time. Ids read
//! `uneven/case/whole/t1` and `uneven/case/runs-apart/t1` (and `t2`, … on every core);
//! throughput in FLOPs.

use std::num::NonZeroUsize;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gconv::{Conv2d, Conv2dParams, GroupSizes, Options, Padding, UnevenConv2d, UnevenGeometry};
use gconv_benches::data;

/// Shapes from the families uneven groups mix: wide and small groups (ResNeXt-like), a
/// depthwise run beside a wide group, and a batch of the first.
fn cases() -> Vec<(&'static str, Conv2dParams, GroupSizes, [usize; 4])> {
    let three_by_three = |channels| {
        Conv2dParams::new(channels, channels, 3)
            .padding(Padding::uniform(1))
            .bias(false)
    };
    let resnext_like = GroupSizes::new(
        [[8; 16].as_slice(), &[4; 32]].concat(),
        [[8; 16].as_slice(), &[4; 32]].concat(),
    );
    let depthwise_and_wide = GroupSizes::new(
        [[1; 96].as_slice(), &[48]].concat(),
        [[1; 96].as_slice(), &[48]].concat(),
    );
    vec![
        (
            "wide_and_small_256x28",
            three_by_three(256),
            resnext_like.clone(),
            [1, 256, 28, 28],
        ),
        (
            "depthwise_and_wide_144x56",
            three_by_three(144),
            depthwise_and_wide,
            [1, 144, 56, 56],
        ),
        (
            "batch8_wide_and_small_256x28",
            three_by_three(256),
            resnext_like,
            [8, 256, 28, 28],
        ),
    ]
}

fn bench_uneven(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut group = c.benchmark_group("uneven");
    for (name, params, sizes, input_shape) in cases() {
        let geometry =
            UnevenGeometry::new(params, sizes, input_shape).expect("the cases are valid");
        let input = data(geometry.input_len(), 1);
        let weight = data(geometry.weight_count(), 2);
        let mut output = vec![0.0f32; geometry.output_len()];
        group.throughput(Throughput::Elements(geometry.flops()));
        let mut thread_counts = vec![1];
        if cores > 1 {
            thread_counts.push(cores);
        }
        for threads in thread_counts {
            let options = Options::default().threads(threads);
            let conv = UnevenConv2d::from_geometry(&geometry, &weight, None, options)
                .expect("the cases are valid");
            let id = BenchmarkId::new(name, format!("whole/t{threads}"));
            group.bench_function(id, |b| b.iter(|| conv.run(&input, &mut output).unwrap()));

            // Each run on its own contiguous input of the whole batch.
            let mut apart: Vec<(Conv2d, Vec<f32>, Vec<f32>)> = geometry
                .sizes()
                .runs()
                .iter()
                .map(|run| {
                    let run_geometry = geometry
                        .run_geometry(run, input_shape[0])
                        .expect("the cases are valid");
                    let conv = Conv2d::from_geometry(
                        &run_geometry,
                        &weight[geometry.run_weight_range(run)],
                        None,
                        options,
                    )
                    .expect("the cases are valid");
                    let input = data(run_geometry.input_len(), 1);
                    let output = vec![0.0f32; run_geometry.output_len()];
                    (conv, input, output)
                })
                .collect();
            let id = BenchmarkId::new(name, format!("runs-apart/t{threads}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    for (conv, input, output) in &mut apart {
                        conv.run(input, output).unwrap();
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_uneven);
criterion_main!(benches);
