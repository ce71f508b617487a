//! Every layer of the layer list (see `gconv_benches::layers`), one criterion group per
//! network, with throughput in FLOPs so reports read as FLOP/s (criterion prints "elem/s").
//! For each layer: the dispatched kernel on every instruction-set tier the CPU has at 1 thread
//! and on the best tier at all cores; the reference only on layers under 20 MFLOP, where it
//! finishes in reasonable time. Benchmark ids read `network/layer/avx512/t1`, so that
//! `cargo bench -p gconv-benches -- 'resnext50/.*/t1'` picks a slice.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gconv::{Conv2d, Isa, Options};
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

criterion_group!(benches, bench_layers);
criterion_main!(benches);
