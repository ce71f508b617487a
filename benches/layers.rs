//! Every layer of the layer list (see `gconv_benches::layers`), one criterion group per
//! network, with throughput in FLOPs so reports read as FLOP/s (criterion prints "elem/s").
//! For each layer: the dispatched kernel on every instruction-set tier the CPU has at 1 thread
//! and on the best tier at all cores; the reference only on layers under 20 MFLOP, where it
//! finishes in reasonable time. On the best tier, at 1 thread and all cores, the post-operations
//! of a residual block too: bias, residual and ReLU6 fused into the plan (`fused`) against the
//! plain convolution followed by a separate pass over its output (`separate`); and on the
//! depthwise layers, channel multipliers 2 and 4 (`multiplier2`, `multiplier4`: C_out = k·C_in,
//! the same input; compare their FLOP/s with the layer's own). Benchmark ids
//! read `network/layer/avx512/t1`, so that `cargo bench -p gconv-benches -- 'resnext50/.*/t1'`
//! picks a slice.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gconv::{Activation, Conv2d, Isa, Options};
use gconv_benches::{data, layers};

/// The reference runs on layers below this many FLOPs only.
const REFERENCE_LIMIT: u64 = 20_000_000;

fn bench_layers(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut networks: BTreeMap<String, Vec<gconv::workload::Layer>> = BTreeMap::new();
    for layer in layers() {
        networks
            .entry(layer.network().to_string())
            .or_default()
            .push(layer);
    }
    for (network, layers) in networks {
        let mut group = c.benchmark_group(network);
        for layer in layers {
            let geometry = layer.geometry;
            let input = data(geometry.input_len(), 1);
            let weight = data(geometry.weight_count(), 2);
            let mut output = vec![0.0f32; geometry.output_len()];
            group.throughput(Throughput::Elements(geometry.flops()));
            let short_name = layer
                .name
                .rsplit('.')
                .next()
                .unwrap_or(&layer.name)
                .to_string();
            // Best tier first: at 1 thread and all cores; then the lower tiers at 1 thread.
            let mut runs: Vec<(Isa, usize)> = vec![(Isa::best(), 1)];
            if cores > 1 {
                runs.push((Isa::best(), cores));
            }
            let lower_tiers = Isa::available()
                .into_iter()
                .filter(|&isa| isa != Isa::best());
            runs.extend(lower_tiers.map(|isa| (isa, 1)));
            for (isa, threads) in runs {
                let options = Options::default().isa(isa).threads(threads);
                let conv = Conv2d::from_geometry(&geometry, &weight, None, options)
                    .expect("the layer list holds valid layers");
                let id = BenchmarkId::new(short_name.clone(), format!("{}/t{threads}", conv.isa()));
                group.bench_function(id, |b| b.iter(|| conv.run(&input, &mut output).unwrap()));
                if isa == Isa::best() {
                    bench_post_operations(&mut group, &layer, &short_name, options);
                    bench_multipliers(&mut group, &layer, &short_name, options);
                }
            }
            if geometry.flops() < REFERENCE_LIMIT {
                let id = BenchmarkId::new(short_name.clone(), "reference");
                group.bench_function(id, |b| {
                    b.iter(|| {
                        gconv_reference::conv2d_into(&geometry, &input, &weight, None, &mut output)
                            .unwrap()
                    })
                });
            }
        }
        group.finish();
    }
}

/// A residual block's end, `relu6(conv(x) + b + r)`: fused into the plan, and as the plain
/// convolution (with its bias) followed by one pass over the output adding the residual and
/// clamping, the way separate operations compute it.
fn bench_post_operations(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    layer: &gconv::workload::Layer,
    short_name: &str,
    options: Options,
) {
    let geometry = layer
        .geometry
        .params()
        .bias(true)
        .geometry(layer.geometry.input_shape())
        .expect("a layer with a bias is as valid as without");
    let input = data(geometry.input_len(), 1);
    let weight = data(geometry.weight_count(), 2);
    let bias = data(geometry.out_channels(), 3);
    let residual = data(geometry.output_len(), 4);
    let mut output = vec![0.0f32; geometry.output_len()];
    let threads = options.threads;
    let fused = options.residual(true).activation(Activation::Relu6);
    let fused = Conv2d::from_geometry(&geometry, &weight, Some(&bias), fused)
        .expect("the layer list holds valid layers");
    let plain = Conv2d::from_geometry(&geometry, &weight, Some(&bias), options)
        .expect("the layer list holds valid layers");
    let suffix = match threads {
        gconv::Threads::Count(count) => format!("t{count}"),
        gconv::Threads::All => "all".to_string(),
    };
    let id = BenchmarkId::new(short_name, format!("fused/{suffix}"));
    group.bench_function(id, |b| {
        b.iter(|| {
            fused
                .run_with_residual(&input, &residual, &mut output)
                .unwrap()
        })
    });
    let id = BenchmarkId::new(short_name, format!("separate/{suffix}"));
    group.bench_function(id, |b| {
        b.iter(|| {
            plain.run(&input, &mut output).unwrap();
            for (value, &residual) in output.iter_mut().zip(&residual) {
                *value = (*value + residual).clamp(0.0, 6.0);
            }
        })
    });
}

/// A depthwise layer with channel multipliers 2 and 4 (`Conv2d(C, k*C, groups=C)`) on the same
/// input; nothing for other layers.
fn bench_multipliers(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    layer: &gconv::workload::Layer,
    short_name: &str,
    options: Options,
) {
    if layer.geometry.in_channels_per_group() != 1 {
        return;
    }
    let params = *layer.geometry.params();
    let input = data(layer.geometry.input_len(), 1);
    for multiplier in [2, 4] {
        let geometry = gconv::Conv2dParams {
            out_channels: params.out_channels * multiplier,
            ..params
        }
        .geometry(layer.geometry.input_shape())
        .expect("a depthwise layer takes any channel multiplier");
        let weight = data(geometry.weight_count(), 2);
        let mut output = vec![0.0f32; geometry.output_len()];
        let conv = Conv2d::from_geometry(&geometry, &weight, None, options)
            .expect("the layer list holds valid layers");
        let threads = conv.threads();
        group.throughput(Throughput::Elements(geometry.flops()));
        let id = BenchmarkId::new(short_name, format!("multiplier{multiplier}/t{threads}"));
        group.bench_function(id, |b| b.iter(|| conv.run(&input, &mut output).unwrap()));
    }
    group.throughput(Throughput::Elements(layer.geometry.flops()));
}

criterion_group!(benches, bench_layers);
criterion_main!(benches);
