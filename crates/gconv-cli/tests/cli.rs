//! The `gconv` binary as a user runs it: exit status, stdout, stderr and files.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{gconv, npy};

use gconv::Isa;
use gconv_shape::{Conv2dParams, Padding};
use gconv_testkit::{Problem, check_against_reference, check_fused_against_reference};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A float32 C-order `.npy` file of `shape` holding `data`.
fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let bytes: Vec<u8> = data.iter().flat_map(|value| value.to_le_bytes()).collect();
    npy("<f4", false, &shape_text, &bytes)
}

/// Reads back the data of a file written by `gconv run`, checking the header's shape.
fn npy_data(path: &Path, shape: &[usize]) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    let tuple = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = tuple
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| dim.parse().unwrap())
        .collect();
    assert_eq!(dims, shape, "{header}");
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .collect()
}

/// `gconv run --input INPUT --weight WEIGHT --groups GROUPS --output OUTPUT` and `extra`.
fn run_gconv(input: &str, weight: &str, groups: usize, output: &Path, extra: &[&str]) -> Output {
    let groups = groups.to_string();
    let output = output.to_str().unwrap();
    let args = [
        "run", "--input", input, "--weight", weight, "--groups", &groups, "--output", output,
    ];
    gconv(&[&args[..], extra].concat())
}

struct Files {
    directory: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            directory: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn npy(&self, name: &str, shape: &[usize], data: &[f32]) -> String {
        let path = self.path(name);
        std::fs::write(&path, npy_bytes(shape, data)).unwrap();
        path.to_str().unwrap().to_string()
    }
}

#[test]
fn shape_prints_the_seed_examples() {
    for (out_channels, groups, weight) in [
        ("6", "1", "[6, 6, 1, 1]"),
        ("3", "1", "[3, 6, 1, 1]"),
        ("6", "2", "[6, 3, 1, 1]"),
        ("6", "3", "[6, 2, 1, 1]"),
    ] {
        let output = gconv(&[
            "shape",
            "--in-channels",
            "6",
            "--out-channels",
            out_channels,
            "--kernel",
            "1",
            "--groups",
            groups,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains(weight), "{}", stdout(&output));
    }
}

#[test]
fn shape_refuses_groups_that_do_not_divide_the_channels() {
    let output = gconv(&[
        "shape",
        "--in-channels",
        "6",
        "--out-channels",
        "6",
        "--kernel",
        "1",
        "--groups",
        "4",
    ]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim(),
        "gconv: error: in_channels (6) must be divisible by groups (4)"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn shape_json_has_output_shape_and_flops() {
    let output = gconv(&[
        "shape",
        "--in-channels",
        "96",
        "--out-channels",
        "256",
        "--kernel",
        "5",
        "--groups",
        "2",
        "--padding",
        "2",
        "--input-shape",
        "1,96,27,27",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["weight_shape"], serde_json::json!([256, 48, 5, 5]));
    assert_eq!(value["output_shape"], serde_json::json!([1, 256, 27, 27]));
    assert_eq!(
        value["parameter_count"],
        serde_json::json!(256 * 48 * 25 + 256)
    );
    assert_eq!(
        value["flops"],
        serde_json::json!(2u64 * 256 * 27 * 27 * 48 * 25)
    );
}

#[test]
fn run_matches_the_reference_with_bias_stride_padding_and_dilation() {
    let files = Files::new();
    let geometry = Conv2dParams::new(6, 4, [3, 2])
        .groups(2)
        .stride([2, 1])
        .padding(Padding::per_side(1, 0, 2, 1))
        .dilation([1, 2])
        .geometry([2, 6, 9, 7])
        .unwrap();
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 37 + seed * 11) % 17) as f32 / 8.0 - 1.0)
            .collect()
    };
    let problem = Problem {
        geometry,
        input: values(geometry.input_len(), 1),
        weight: values(geometry.weight_count(), 2),
        bias: Some(values(4, 3)),
    };
    let input = files.npy("x.npy", &geometry.input_shape(), &problem.input);
    let weight = files.npy("w.npy", &geometry.weight_shape(), &problem.weight);
    let bias = files.npy("b.npy", &[4], problem.bias.as_ref().unwrap());
    let out = files.path("y.npy");
    for kernel in ["auto", "reference"] {
        let output = gconv(&[
            "run",
            "--input",
            &input,
            "--weight",
            &weight,
            "--bias",
            &bias,
            "--groups",
            "2",
            "--stride",
            "2,1",
            "--padding",
            "1,0,2,1",
            "--dilation",
            "1,2",
            "--kernel",
            kernel,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let result = npy_data(&out, &geometry.output_shape());
        check_against_reference(&problem, &result).unwrap();
    }
}

/// `--residual` and `--activation` give what the reference's separate operations give, on
/// the fast kernels and on the reference, and the fast kernel is the one that runs without
/// them.
#[test]
fn run_fuses_the_residual_and_the_activation() {
    let files = Files::new();
    let geometry = Conv2dParams::new(6, 12, 3)
        .groups(3)
        .padding(Padding::uniform(1))
        .geometry([2, 6, 7, 19])
        .unwrap();
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 37 + seed * 11) % 23) as f32 / 8.0 - 1.4)
            .collect()
    };
    let problem = Problem {
        geometry,
        input: values(geometry.input_len(), 1),
        weight: values(geometry.weight_count(), 2),
        bias: Some(values(12, 3)),
    };
    let residual = values(geometry.output_len(), 4);
    let input = files.npy("x.npy", &geometry.input_shape(), &problem.input);
    let weight = files.npy("w.npy", &geometry.weight_shape(), &problem.weight);
    let bias = files.npy("b.npy", &[12], problem.bias.as_ref().unwrap());
    let residual_file = files.npy("r.npy", &geometry.output_shape(), &residual);
    let out = files.path("y.npy");
    let activations = [
        ("relu6", gconv::Activation::Relu6),
        (
            "leaky_relu:-0.5",
            gconv::Activation::LeakyRelu { slope: -0.5 },
        ),
        (
            "clamp:-0.25,0.5",
            gconv::Activation::Clamp {
                min: -0.25,
                max: 0.5,
            },
        ),
    ];
    for (flag, activation) in activations {
        for with_residual in [true, false] {
            for kernel in ["auto", "reference"] {
                let mut extra = vec!["--bias", &bias, "--padding", "1", "--kernel", kernel];
                extra.extend(["--activation", flag]);
                if with_residual {
                    extra.extend(["--residual", &residual_file]);
                }
                let output = run_gconv(&input, &weight, 3, &out, &extra);
                assert!(output.status.success(), "{}", stderr(&output));
                let then = match with_residual {
                    true => format!(", then residual+{flag},"),
                    false => format!(", then {flag},"),
                };
                assert!(stderr(&output).contains(&then), "{}", stderr(&output));
                let result = npy_data(&out, &geometry.output_shape());
                let residual = with_residual.then_some(residual.as_slice());
                check_fused_against_reference(&problem, residual, activation, &result)
                    .unwrap_or_else(|diff| panic!("{flag} on {kernel}: {diff}"));
            }
        }
    }
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 6, 4, 4], &[1.0; 96]);
    // Weight for 3 groups while --groups 2 is asked: C_in / g = 3, not 2.
    let weight = files.npy("w.npy", &[6, 2, 1, 1], &[1.0; 12]);
    let out = files.path("y.npy");
    std::fs::write(&out, b"precious").unwrap();
    let output = run_gconv(&input, &weight, 2, &out, &[]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    // As PyTorch does, the weight and the groups set the channels the input must have.
    assert!(
        message.contains(
            "weight [6, 2, 1, 1] with --groups 2 expects in_channels = 4: input [1, 6, 4, 4] \
             must have in_channels (4) channels"
        ),
        "{message}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let leftovers = std::fs::read_dir(files.directory.path()).unwrap().count();
    assert_eq!(leftovers, 3, "no temporary file may remain");
}

#[test]
fn run_refuses_groups_that_do_not_divide_the_output_channels() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 6, 2, 2], &[1.0; 24]);
    let weight = files.npy("w.npy", &[6, 1, 1, 1], &[1.0; 6]);
    let out = files.path("y.npy");
    let output = run_gconv(&input, &weight, 4, &out, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("out_channels (6) must be divisible by groups (4)"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());
}

#[test]
fn run_names_a_channels_last_input_as_such() {
    let files = Files::new();
    // Three channels, channels-last: [N, H, W, C].
    let input = files.npy("x.npy", &[2, 5, 4, 3], &[1.0; 120]);
    let weight = files.npy("w.npy", &[3, 1, 3, 3], &[1.0; 27]);
    let out = files.path("y.npy");
    let output = run_gconv(&input, &weight, 3, &out, &[]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(
            "input [2, 5, 4, 3] must have in_channels (3) channels in dimension 1 of [N, C, H, W], \
             but has 5; its last dimension has 3: is it channels-last (NHWC)? gconv takes NCHW, \
             here [2, 3, 5, 4]"
        ),
        "{message}"
    );
}

#[test]
fn run_says_what_it_wrote_unless_quiet() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 2, 3, 3], &[1.0; 18]);
    let weight = files.npy("w.npy", &[4, 1, 1, 1], &[1.0; 4]);
    let out = files.path("y.npy");
    let output = run_gconv(&input, &weight, 2, &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with(&format!("gconv: wrote {} [1, 4, 3, 3] (", out.display())),
        "{message}"
    );
    assert!(message.trim_end().ends_with(" ms)"), "{message}");
    let quiet = run_gconv(&input, &weight, 2, &out, &["--quiet"]);
    assert!(quiet.status.success());
    assert_eq!(stderr(&quiet), "");
    assert!(stdout(&quiet).is_empty());
}

#[test]
fn a_mistyped_flag_gets_a_suggestion() {
    let output = gconv(&["run", "--group", "2"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("similar argument exists: '--groups'"),
        "{message}"
    );
}

#[test]
fn an_output_in_a_missing_directory_is_named_by_the_users_path() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 1, 2, 2], &[1.0; 4]);
    let weight = files.npy("w.npy", &[1, 1, 1, 1], &[1.0]);
    let out = files.path("missing").join("y.npy");
    let output = run_gconv(&input, &weight, 1, &out, &[]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            files.path("missing").display()
        )),
        "{message}"
    );
    assert!(!message.contains(".gconv-output-"), "{message}");
}

#[test]
fn run_refuses_malformed_npy_and_overwriting_its_input() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 1, 2, 2], &[1.0; 4]);
    let weight = files.npy("w.npy", &[1, 1, 1, 1], &[1.0]);
    let truncated = files.path("short.npy");
    let mut bytes = npy_bytes(&[1, 1, 2, 2], &[1.0; 4]);
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&truncated, bytes).unwrap();
    let out = files.path("y.npy");
    let output = run_gconv(truncated.to_str().unwrap(), &weight, 1, &out, &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("short.npy"), "{}", stderr(&output));

    let output = gconv(&[
        "run", "--input", &input, "--weight", &weight, "--output", &input,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("same file as --input"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        npy_bytes(&[1, 1, 2, 2], &[1.0; 4])
    );
}

#[test]
fn every_command_has_complete_help() {
    for (command, flags) in [
        ("demo", &["--min-time"][..]),
        (
            "shape",
            &[
                "--in-channels",
                "--out-channels",
                "--kernel",
                "--groups",
                "--input-shape",
                "--stride",
                "--padding",
                "--dilation",
                "--no-bias",
                "--json",
            ][..],
        ),
        (
            "run",
            &[
                "--input",
                "--weight",
                "--bias",
                "--stride",
                "--padding",
                "--dilation",
                "--groups",
                "--kernel",
                "--threads",
                "--planning",
                "--wisdom",
                "--output",
            ][..],
        ),
        (
            "tune",
            &[
                "--layers",
                "--filter",
                "--budget-ms",
                "--tolerance",
                "--threads",
                "--wisdom",
                "--json",
            ][..],
        ),
    ] {
        let output = gconv(&[command, "--help"]);
        assert!(output.status.success());
        let help = stdout(&output);
        for flag in flags {
            assert!(
                help.contains(flag),
                "`gconv {command} --help` lacks {flag}:\n{help}"
            );
        }
    }
}

#[test]
fn demo_checks_every_layer_against_the_reference() {
    let output = gconv(&["demo", "--min-time", "0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("error: in_channels (6) must be divisible by groups (4)"));
    assert!(text.contains("[6, 3, 1, 1]"));
    assert!(!text.contains("MISMATCH"), "{text}");
    assert!(text.matches("matches the reference").count() >= 7, "{text}");
}

/// `gconv bench` on the seed layer alone, one thread, one timed run, with `extra` flags.
fn bench_seed_layer(extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--filter",
        "seed",
        "--threads",
        "1",
        "--min-time",
        "0",
    ];
    args.extend_from_slice(extra);
    gconv(&args)
}

#[test]
fn bench_writes_json_lines_that_join_with_the_peers_output() {
    let files = Files::new();
    let json = files.path("ours.jsonl");
    let output = bench_seed_layer(&["--json", json.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("seed.g2_1x1"));
    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let record = &lines[0];
    assert_eq!(record["layer"], "seed.g2_1x1");
    assert_eq!(record["suite"], "published");
    assert_eq!(record["peer"], "gconv");
    assert_eq!(record["threads"], 1);
    assert!(record["median_us"].as_f64().unwrap() > 0.0);
    assert!(record["gflops"].as_f64().unwrap() > 0.0);
    assert!(record["kernel"].as_str().unwrap().starts_with("pwconv-1x1"));
}

#[test]
fn bench_puts_peers_beside_ours_in_the_table_and_the_chart() {
    let files = Files::new();
    let peers = files.path("peers.jsonl");
    std::fs::write(
        &peers,
        concat!(
            r#"{"suite": "layers", "layer": "seed.g2_1x1", "threads": 1, "peer": "ort", "median_us": 4.0, "gflops": 0.5}"#,
            "\n",
            r#"{"suite": "layers", "layer": "seed.g2_1x1", "threads": 1, "peer": "torch", "median_us": 16.0, "gflops": 0.125}"#,
            "\n",
        ),
    )
    .unwrap();
    let chart = files.path("chart.svg");
    let output = bench_seed_layer(&[
        "--peers",
        peers.to_str().unwrap(),
        "--plot",
        chart.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Not a terminal: no progress bar on stderr.
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table.contains("best peer") && table.contains("0.50 ort"),
        "{table}"
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    for text in ["seed.g2_1x1", "gconv", "ort", "torch", "<svg"] {
        assert!(svg.contains(text), "{text} is not in the chart");
    }

    let broken = files.path("broken.jsonl");
    std::fs::write(&broken, "{\"layer\": \"x\"}\n").unwrap();
    let output = gconv(&[
        "bench",
        "--filter",
        "seed",
        "--peers",
        broken.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("line 1: 'threads'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bench_names_the_bad_line_of_a_layer_file() {
    let files = Files::new();
    let layers = files.path("mine.csv");
    std::fs::write(
        &layers,
        "ok,1,4,4,8,8,3,3,1,1,1,4\nbad,1,6,6,8,8,1,1,1,0,1,4\n",
    )
    .unwrap();
    let output = gconv(&[
        "bench",
        "--layers",
        layers.to_str().unwrap(),
        "--min-time",
        "0",
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("line 2"), "{message}");
    assert!(
        message.contains("in_channels (6) must be divisible by groups (4)"),
        "{message}"
    );
}

/// `info` with the post-operations says they ride on the same kernel; `bench` records them in
/// its JSON lines.
#[test]
fn info_and_bench_take_the_post_operations() {
    let problem = [
        "--in-channels",
        "64",
        "--out-channels",
        "64",
        "--kernel",
        "3",
        "--groups",
        "64",
        "--padding",
        "1",
        "--input-shape",
        "1,64,28,28",
    ];
    let plain = gconv(&[&["info"][..], &problem].concat());
    let fused = gconv(
        &[
            &["info"][..],
            &problem,
            &["--activation", "relu6", "--residual"],
        ]
        .concat(),
    );
    assert!(fused.status.success(), "{}", stderr(&fused));
    let kernel = |output: &Output| {
        stdout(output)
            .lines()
            .find(|line| line.starts_with("kernel:"))
            .map(str::to_string)
    };
    assert_eq!(kernel(&fused), kernel(&plain));
    assert!(
        stdout(&fused).contains("post:    residual+relu6 after the bias"),
        "{}",
        stdout(&fused)
    );
    assert!(!stdout(&plain).contains("post:"));

    let files = Files::new();
    let json = files.path("fused.jsonl");
    let output = bench_seed_layer(&[
        "--activation",
        "leaky_relu:0.1",
        "--residual",
        "--bias",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(record["activation"], "leaky_relu:0.1");
    assert_eq!(record["residual"], true);
    assert_eq!(record["bias"], true);
}

#[test]
fn info_names_the_tiers_and_the_kernel_for_a_problem() {
    let output = gconv(&[
        "info",
        "--in-channels",
        "144",
        "--out-channels",
        "144",
        "--kernel",
        "3",
        "--groups",
        "144",
        "--stride",
        "2",
        "--padding",
        "1",
        "--input-shape",
        "1,144,56,56",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("portable"), "{text}");
    assert!(text.contains("family:  dwconv"), "{text}");
    assert!(text.contains("kernel:  dwconv-3x3s2d1-"), "{text}");
}

#[test]
fn a_forced_tier_is_used_and_an_unknown_one_is_an_error() {
    let run = |isa: &str| {
        Command::new(env!("CARGO_BIN_EXE_gconv"))
            .args([
                "info",
                "--in-channels",
                "8",
                "--out-channels",
                "8",
                "--kernel",
                "3",
                "--input-shape",
                "1,8,9,9",
            ])
            .env("GCONV_ISA", isa)
            .output()
            .unwrap()
    };
    let output = run("portable");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("-portable"), "{}", stdout(&output));
    let output = run("sse9");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown instruction set 'sse9'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_forced_cpu_class_steers_the_choice_and_an_unknown_one_is_an_error() {
    let info = |flag: &[&str], env: &str| {
        Command::new(env!("CARGO_BIN_EXE_gconv"))
            .args([
                "info",
                "--in-channels",
                "32",
                "--out-channels",
                "32",
                "--kernel",
                "7",
                "--groups",
                "32",
                "--padding",
                "3",
                "--input-shape",
                "1,32,7,7",
            ])
            .args(flag)
            .env("GCONV_CPU", env)
            .output()
            .unwrap()
    };
    for class in ["full512", "split512", "narrow"] {
        for output in [info(&["--cpu", class], ""), info(&[], class)] {
            assert!(output.status.success(), "{}", stderr(&output));
            let expected = format!("chosen for a {class} CPU");
            assert!(stdout(&output).contains(&expected), "{}", stdout(&output));
        }
    }
    // On AVX-512 the class decides the lanes of the 7x7 window on 7x7 planes.
    if Isa::X86_64V4.is_supported() {
        let full = stdout(&info(&["--cpu", "full512"], ""));
        let split = stdout(&info(&["--cpu", "split512"], ""));
        assert!(full.contains("-lanes-16c"), "{full}");
        assert!(split.contains("-lanes-8c"), "{split}");
    }
    let output = info(&["--cpu", "zen4"], "");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown CPU class 'zen4'"),
        "{}",
        stderr(&output)
    );
    let output = info(&[], "zen4");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown CPU class 'zen4'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bench_sums_a_whole_network_by_its_counts_beside_the_peers() {
    let files = Files::new();
    let layers = files.path("net.csv");
    std::fs::write(
        &layers,
        "net.dense,1,4,8,8,8,3,3,1,1,1,1,3\nnet.dw,1,8,8,8,8,3,3,1,1,1,8\n",
    )
    .unwrap();
    // A peer at 1 GFLOP/s on both layers: its total is each layer's FLOPs in ns, weighted.
    let peers = files.path("peers.jsonl");
    let line = |layer: &str| {
        format!(
            r#"{{"layer": "{layer}", "threads": 1, "peer": "ort", "median_us": 1.0, "gflops": 1.0}}"#
        )
    };
    std::fs::write(
        &peers,
        format!("{}\n{}\n", line("net.dense"), line("net.dw")),
    )
    .unwrap();
    let json = files.path("ours.jsonl");
    let output = gconv(&[
        "bench",
        "--layers",
        layers.to_str().unwrap(),
        "--threads",
        "1",
        "--min-time",
        "0",
        "--peers",
        peers.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    // FLOPs: dense 2·8·64·4·9 = 36864 (three times), depthwise 2·8·64·9 = 9216: 119808 ns.
    assert!(table.contains("network totals"), "{table}");
    assert!(table.contains("ort 119.8 µs"), "{table}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records[0]["count"], 3);
    assert_eq!(records[1]["count"], 1);
    let ours: f64 = records
        .iter()
        .map(|record| record["median_us"].as_f64().unwrap() * record["count"].as_f64().unwrap())
        .sum();
    let dense_share = 100.0 * records[0]["median_us"].as_f64().unwrap() * 3.0 / ours;
    assert!(
        table.contains(&format!("({dense_share:.0} % in groups = 1)")),
        "{table}"
    );
}

#[test]
fn a_measured_run_gives_the_tables_bits_and_keeps_its_choice_as_wisdom() {
    let files = Files::new();
    // Depthwise 3x3 on 32 channels: several candidate kernels on every tier.
    let geometry = Conv2dParams::new(32, 32, 3)
        .groups(32)
        .padding(Padding::uniform(1))
        .geometry([1, 32, 12, 13])
        .unwrap();
    let input_data = gconv_testkit::data::uniform(geometry.input_len(), 1);
    let weight_data = gconv_testkit::data::uniform(geometry.weight_count(), 2);
    let input = files.npy("x.npy", &geometry.input_shape(), &input_data);
    let weight = files.npy("w.npy", &geometry.weight_shape(), &weight_data);
    let wisdom = files.path("wisdom.txt");
    let wisdom_flag = ["--wisdom", wisdom.to_str().unwrap()];
    let (table, measured) = (files.path("table.npy"), files.path("measured.npy"));
    let padded = ["--padding", "1"];

    let output = run_gconv(&input, &weight, 32, &table, &padded);
    assert!(output.status.success(), "{}", stderr(&output));
    let extra = [&padded[..], &["--planning", "measure:20"], &wisdom_flag].concat();
    let output = run_gconv(&input, &weight, 32, &measured, &extra);
    assert!(output.status.success(), "{}", stderr(&output));
    let bits = |path: &Path| -> Vec<u32> {
        let values = npy_data(path, &geometry.output_shape());
        values.iter().map(|value| value.to_bits()).collect()
    };
    assert_eq!(bits(&table), bits(&measured));

    let text = std::fs::read_to_string(&wisdom).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# gconv wisdom 1", "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].contains(" 1x32x12x13-g32-o32-k3x3-s1x1-d1x1-p1,1,1,1 "),
        "{text}"
    );

    // Another process reads the choice back: no timing, the same kernel.
    let info = gconv(&[
        "info",
        "--in-channels",
        "32",
        "--out-channels",
        "32",
        "--kernel",
        "3",
        "--groups",
        "32",
        "--padding",
        "1",
        "--input-shape",
        "1,32,12,13",
        "--threads",
        lines[2].split(' ').nth(3).unwrap(),
        "--wisdom",
        wisdom.to_str().unwrap(),
    ]);
    assert!(info.status.success(), "{}", stderr(&info));
    let printed = stdout(&info);
    assert!(printed.contains("planned: from wisdom"), "{printed}");
    let kernel = lines[2].split(' ').nth(5).unwrap();
    assert!(printed.contains(&format!("kernel:  {kernel}")), "{printed}");
}

#[test]
fn bad_planning_flags_and_wisdom_files_are_refused_and_leave_the_output_alone() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 4, 5, 5], &[1.0; 100]);
    let weight = files.npy("w.npy", &[4, 1, 3, 3], &[1.0; 36]);
    let out = files.path("y.npy");
    std::fs::write(&out, b"precious").unwrap();

    let output = run_gconv(&input, &weight, 4, &out, &["--planning", "sometimes"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected table, wisdom, measure or measure:MS, got 'sometimes'"),
        "{}",
        stderr(&output)
    );
    let output = run_gconv(&input, &weight, 4, &out, &["--planning", "measure:soon"]);
    assert!(
        stderr(&output).contains("'soon' is not a whole number"),
        "{}",
        stderr(&output)
    );

    let wisdom = files.path("wisdom.txt");
    std::fs::write(
        &wisdom,
        "# gconv wisdom 1\nAuthenticAMD avx512 full512 one p k 5\n",
    )
    .unwrap();
    let output = run_gconv(
        &input,
        &weight,
        4,
        &out,
        &["--wisdom", wisdom.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message
            .contains("wisdom.txt, line 2 of the wisdom: threads 'one' is not a positive integer"),
        "{message}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn tune_reports_the_tables_distance_from_the_fastest_and_writes_wisdom() {
    let files = Files::new();
    let layers = files.path("layers.csv");
    std::fs::write(
        &layers,
        "name,batch,in_channels,out_channels,height,width,kernel_h,kernel_w,stride,padding,dilation,groups\n\
         tiny.dw,1,16,16,9,9,3,3,1,1,1,16\n\
         tiny.grouped,1,32,32,6,6,3,3,1,1,1,4\n",
    )
    .unwrap();
    let (wisdom, json) = (files.path("wisdom.txt"), files.path("tune.jsonl"));
    let output = gconv(&[
        "tune",
        "--layers",
        layers.to_str().unwrap(),
        "--budget-ms",
        "10",
        "--threads",
        "1",
        "--wisdom",
        wisdom.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("tiny.dw") && printed.contains("tiny.grouped"),
        "{printed}"
    );
    assert!(printed.contains("fastest candidate on "), "{printed}");
    assert!(printed.contains(" of 2 layers"), "{printed}");
    let wisdom_text = std::fs::read_to_string(&wisdom).unwrap();
    assert_eq!(wisdom_text.lines().count(), 4, "{wisdom_text}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for record in &records {
        let candidates = record["candidates"].as_array().unwrap();
        assert!(candidates.len() > 1, "{record}");
        assert_eq!(candidates[0]["kernel"], record["table_kernel"], "{record}");
        assert!(record["table_ratio"].as_f64().unwrap() >= 1.0, "{record}");
    }
}

/// `--in-group-sizes` / `--out-group-sizes` with a 1-D weight give the reference's uneven
/// convolution, on the fast kernels and on the reference, with the post-operations too, and
/// say which kernel each run of equal groups got.
#[test]
fn run_takes_uneven_groups_with_a_flat_weight() {
    use gconv_shape::{GroupSizes, UnevenGeometry};
    let files = Files::new();
    let params = Conv2dParams::new(7, 10, [3, 1])
        .stride([2, 1])
        .padding(Padding::per_side(1, 0, 0, 1));
    let sizes = GroupSizes::new([3, 1, 1, 2], [4, 2, 2, 2]);
    let geometry = UnevenGeometry::new(params, sizes, [2, 7, 6, 9]).unwrap();
    // Small integers: every sum is exact, so every implementation gives the same bits.
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 5) % 9) as f32 - 4.0)
            .collect()
    };
    let (input, weight, bias) = (
        values(geometry.input_len(), 1),
        values(geometry.weight_count(), 2),
        values(10, 3),
    );
    let residual = values(geometry.output_len(), 4);
    let mut expected =
        gconv_reference::conv2d_uneven(&geometry, &input, &weight, Some(&bias)).unwrap();
    let input_file = files.npy("x.npy", &geometry.input_shape(), &input);
    let weight_file = files.npy("w.npy", &[weight.len()], &weight);
    let bias_file = files.npy("b.npy", &[10], &bias);
    let residual_file = files.npy("r.npy", &geometry.output_shape(), &residual);
    let out = files.path("y.npy");
    let uneven = [
        "--in-group-sizes",
        "3,1,1,2",
        "--out-group-sizes",
        "4,2,2,2",
        "--kernel-size",
        "3,1",
        "--stride",
        "2,1",
        "--padding",
        "1,0,0,1",
        "--bias",
        &bias_file,
    ];
    for kernel in ["auto", "reference"] {
        let output = run_gconv(
            &input_file,
            &weight_file,
            1,
            &out,
            &[&uneven[..], &["--kernel", kernel]].concat(),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            npy_data(&out, &geometry.output_shape()),
            expected,
            "{kernel}"
        );
        if kernel == "auto" {
            // Three runs: group 0, groups 1..3 (1→2 each), group 3.
            let message = stderr(&output);
            assert!(message.contains("group 0 (3→4): "), "{message}");
            assert!(message.contains("groups 1..3 (1→2 each): "), "{message}");
            assert!(message.contains("group 3 (2→2): "), "{message}");
        }
    }
    gconv_reference::post_ops(&mut expected, Some(&residual), gconv::Activation::Relu6);
    for kernel in ["auto", "reference"] {
        let fused = [
            "--residual",
            &residual_file,
            "--activation",
            "relu6",
            "--kernel",
            kernel,
        ];
        let output = run_gconv(
            &input_file,
            &weight_file,
            1,
            &out,
            &[&uneven[..], &fused].concat(),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            npy_data(&out, &geometry.output_shape()),
            expected,
            "{kernel}, fused"
        );
    }
}

/// Each refusal of uneven groups names its rule and leaves an existing output as it was.
#[test]
fn uneven_group_refusals_name_the_rule_and_leave_the_output_alone() {
    let files = Files::new();
    let input = files.npy("x.npy", &[1, 5, 4, 4], &[1.0; 80]);
    let flat = files.npy("w.npy", &[180], &[1.0; 180]);
    let four_d = files.npy("w4.npy", &[8, 5, 3, 3], &[1.0; 360]);
    let out = files.path("y.npy");
    std::fs::write(&out, b"precious").unwrap();
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["--in-group-sizes", "3,3", "--out-group-sizes", "4,4"],
            &flat,
            "input group sizes [3, 3] add up to 6, but in_channels is 5",
        ),
        (
            &["--in-group-sizes", "3,2", "--out-group-sizes", "4,4,1"],
            &flat,
            "the input group sizes list 2 groups but the output group sizes list 3",
        ),
        (
            &["--in-group-sizes", "5,0", "--out-group-sizes", "4,4"],
            &flat,
            "input group 1 of [5, 0] has no channels",
        ),
        (
            &["--in-group-sizes", "3,2", "--out-group-sizes", "4,4"],
            &four_d,
            "the weight is 1-D",
        ),
        (
            // (--groups 3 comes from the loop below.)
            &["--in-group-sizes", "3,2", "--out-group-sizes", "4,4"],
            &flat,
            "groups (3) must be 1 or the number of group sizes (2)",
        ),
        (&["--in-group-sizes", "3,2"], &flat, "--out-group-sizes"),
    ];
    for (flags, weight, message) in cases {
        let groups = if message.starts_with("groups (3)") {
            3
        } else {
            1
        };
        let output = run_gconv(&input, weight, groups, &out, flags);
        assert!(!output.status.success(), "{flags:?}");
        assert!(
            stderr(&output).contains(message),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"precious", "{flags:?}");
    }
}

/// `info` with uneven group sizes names each run of equal groups, its channels, its kernel
/// and the rule that chose it.
#[test]
fn info_explains_the_kernel_of_each_run_of_uneven_groups() {
    let output = gconv(&[
        "info",
        "--in-channels",
        "7",
        "--out-channels",
        "10",
        "--kernel",
        "3",
        "--padding",
        "1",
        "--input-shape",
        "2,7,14,14",
        "--in-group-sizes",
        "3,1,1,2",
        "--out-group-sizes",
        "4,2,2,2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for run in [
        "group 0: 3→4 channels each, input channels 0..3, output channels 0..4",
        "groups 1..3 (2 groups): 1→2 channels each, input channels 3..5, output channels 4..8",
        "group 3: 2→2 channels each, input channels 5..7, output channels 8..10",
    ] {
        assert!(text.contains(run), "{run}\n{text}");
    }
    // The 1→2 run is a depthwise layer with multiplier 2 and gets a depthwise kernel.
    assert_eq!(text.matches("  kernel:  ").count(), 3, "{text}");
    assert_eq!(text.matches("  rule:    ").count(), 3, "{text}");
    assert!(text.contains("  kernel:  dwconv-3x3s1d1-"), "{text}");
}

/// `bench --multiplier K` times the depthwise layers with K times their output channels and
/// says so in the JSON lines; without a depthwise layer it is an error.
#[test]
fn bench_multiplies_the_depthwise_layers_channels() {
    let files = Files::new();
    let json = files.path("multiplied.jsonl");
    let output = gconv(&[
        "bench",
        "--filter",
        "dw960",
        "--threads",
        "1",
        "--min-time",
        "0",
        "--multiplier",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("C960->2880"),
        "{}",
        stdout(&output)
    );
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(record["multiplier"], 3);
    assert_eq!(record["flops"], 2u64 * 2880 * 7 * 7 * 9);
    let output = bench_seed_layer(&["--multiplier", "2"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("applies to depthwise layers"),
        "{}",
        stderr(&output)
    );
}

/// `--padding-mode` on the reference gives the reference's result in each mode; the fast
/// kernels refuse the modes they do not compute yet, and a padding the mode does not allow is
/// refused naming the side; every refusal leaves the output alone.
#[test]
fn run_takes_a_padding_mode_on_the_reference_and_names_what_it_refuses() {
    let files = Files::new();
    let geometry = |mode: gconv::PaddingMode| {
        Conv2dParams::new(4, 4, 3)
            .groups(2)
            .padding(Padding::per_side(2, 1, 0, 2))
            .padding_mode(mode)
            .bias(false)
            .geometry([1, 4, 3, 5])
            .unwrap()
    };
    let zeros = geometry(gconv::PaddingMode::Zeros);
    let values =
        |len: usize| -> Vec<f32> { (0..len).map(|i| ((i * 5) % 11) as f32 - 5.0).collect() };
    let (input, weight) = (values(zeros.input_len()), values(zeros.weight_count()));
    let input_file = files.npy("x.npy", &zeros.input_shape(), &input);
    let weight_file = files.npy("w.npy", &zeros.weight_shape(), &weight);
    let out = files.path("y.npy");
    for mode in ["reflect", "replicate", "circular"] {
        let geometry = geometry(mode.parse().unwrap());
        let flags = [
            "--padding",
            "2,1,0,2",
            "--padding-mode",
            mode,
            "--kernel",
            "reference",
        ];
        let output = run_gconv(&input_file, &weight_file, 2, &out, &flags);
        assert!(output.status.success(), "{mode}: {}", stderr(&output));
        let expected = gconv_reference::conv2d(&geometry, &input, &weight, None).unwrap();
        assert_eq!(npy_data(&out, &geometry.output_shape()), expected, "{mode}");
    }
    std::fs::write(&out, b"precious").unwrap();
    let output = run_gconv(
        &input_file,
        &weight_file,
        2,
        &out,
        &["--padding", "1", "--padding-mode", "reflect"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output)
            .contains("padding_mode 'reflect' does not run on gconv's vectorised kernels yet"),
        "{}",
        stderr(&output)
    );
    let output = run_gconv(
        &input_file,
        &weight_file,
        2,
        &out,
        &[
            "--padding",
            "3,0,0,0",
            "--padding-mode",
            "reflect",
            "--kernel",
            "reference",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("padding top (3) is not smaller than the input height (3)"),
        "{}",
        stderr(&output)
    );
    let output = run_gconv(
        &input_file,
        &weight_file,
        2,
        &out,
        &["--padding-mode", "mirror"],
    );
    assert!(
        stderr(&output).contains("unknown padding mode 'mirror'"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    let output = gconv(&[
        "shape",
        "--in-channels",
        "4",
        "--out-channels",
        "4",
        "--kernel",
        "3",
        "--padding",
        "1",
        "--padding-mode",
        "circular",
        "--input-shape",
        "1,4,5,5",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("padding_mode=circular)"),
        "{}",
        stdout(&output)
    );
}
