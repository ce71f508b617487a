//! `gconv`: grouped 2-D convolution (PyTorch's `Conv2d(..., groups=g)`) from the command line.
// Doc comments on the clap types are `--help` text, where `[N, C, H, W]` means a shape.
#![allow(rustdoc::broken_intra_doc_links)]

/// `println!` that returns the write error (`?`) instead of panicking, so that a closed pipe
/// (`gconv demo | head`) ends the program quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod compare;
mod demo;
mod implementations;
mod info;
mod measure;
mod options;
mod peers;
mod plot;
mod run;
mod shape;
mod tune;
mod uneven;

use std::process::ExitCode;

use gconv_cli::npy;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Grouped 2-D convolution with PyTorch's Conv2d semantics: shape arithmetic, convolution of
/// .npy files, and a demo of the kernels on layers of published networks.
#[derive(Debug, Parser)]
#[command(name = "gconv", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show grouped convolution on built-in data: the weight shapes and parameter counts of the
    /// seed examples, then real layers of published networks through every implementation,
    /// each checked against the reference, with time and GFLOP/s.
    Demo(demo::DemoArgs),
    /// Print the weight shape, parameter count and, given an input shape, the output shape and
    /// FLOPs of a convolution.
    Shape(shape::ShapeArgs),
    /// Convolve float32 NCHW .npy tensors and write the output as .npy.
    Run(run::RunArgs),
    /// Time the layers of a layer list: medians, GFLOP/s, and JSON lines that join with the
    /// peers script's output.
    Bench(bench::BenchArgs),
    /// Show the CPU's instruction-set tiers and, for a problem, the kernel that runs it.
    Info(info::InfoArgs),
    /// Time every candidate kernel of each layer of a layer list: how far the selection
    /// table's choice is from the fastest, and a wisdom file of the fastest.
    Tune(tune::TuneArgs),
    /// Compare two saved criterion baselines benchmark by benchmark: the change of the median
    /// with its confidence interval; fails when any benchmark got slower beyond the noise.
    Compare(compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if !error.use_stderr()
                || error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // --help, --version, or a bare `gconv`: clap's own text.
            error.exit()
        }
        Err(error) => {
            eprintln!("gconv: error: {} (see --help)", usage_error_line(&error));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Shape(args) => shape::shape(&args),
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Info(args) => info::info(&args),
        Command::Tune(args) => tune::tune(&args),
        Command::Compare(args) => compare::compare(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the context chain joined by ": ".
            eprintln!("gconv: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message for a command line it refused, on one line: the first paragraph without
/// the `error:` label, its continuation lines (the list of missing flags) joined on, then
/// clap's suggestions (`tip: a similar argument exists: '--groups'`).
fn usage_error_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let mut lines = text.lines().map(str::trim);
    let mut parts: Vec<&str> = lines.by_ref().take_while(|line| !line.is_empty()).collect();
    parts.extend(lines.filter(|line| line.starts_with("tip:")));
    let line = parts.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// Whether the reader of standard output went away (`| head`): not an error of ours.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
