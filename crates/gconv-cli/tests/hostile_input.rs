//! Hostile input to the `gconv` binary: every case must end with a non-zero exit status, one
//! line on stderr that names the problem, and an existing `--output` file untouched (no
//! temporary file left beside it either).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{gconv, npy};

/// A refused `gconv run`: its name, the flags changed from the valid problem, and what the
/// error line must say.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// What the output file holds before each case; it must hold it after.
const PRECIOUS: &[u8] = b"an earlier result that must survive";

fn floats(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|index| (index as f32 * 0.25).to_le_bytes())
        .collect()
}

/// A directory with a valid problem in it: `x.npy` [1, 4, 5, 5], `w.npy` [4, 2, 3, 3] for
/// two groups, and the precious `y.npy`.
struct Workspace {
    directory: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let workspace = Self { directory };
        workspace.write("x.npy", &npy("<f4", false, "(1, 4, 5, 5)", &floats(100)));
        workspace.write("w.npy", &npy("<f4", false, "(4, 2, 3, 3)", &floats(72)));
        workspace.write("y.npy", PRECIOUS);
        workspace
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.arg(name)
    }

    /// `gconv run` on the valid problem with `changes` applied to its arguments.
    fn run_args(&self, changes: &[(&str, &str)]) -> Vec<String> {
        let mut args: Vec<(String, String)> = [
            ("--input", self.arg("x.npy")),
            ("--weight", self.arg("w.npy")),
            ("--output", self.arg("y.npy")),
            ("--groups", "2".to_string()),
            ("--padding", "1".to_string()),
        ]
        .into_iter()
        .map(|(flag, value)| (flag.to_string(), value))
        .collect();
        for &(flag, value) in changes {
            match args.iter_mut().find(|(existing, _)| existing == flag) {
                Some(pair) => pair.1 = value.to_string(),
                None => args.push((flag.to_string(), value.to_string())),
            }
        }
        let mut line = vec!["run".to_string()];
        for (flag, value) in args {
            line.push(flag);
            line.push(value);
        }
        line
    }

    /// Runs `args`, expecting a failure whose single stderr line contains `expected`, with
    /// `y.npy` unchanged and no other file created.
    fn expect_refusal(&self, case: &str, args: &[String], expected: &str) {
        let before = self.listing();
        let output = gconv(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: succeeded: {args:?}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{case}: stderr is not one line:\n{stderr}"
        );
        assert!(
            stderr.starts_with("gconv: error: "),
            "{case}: not an error line: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{case}: '{expected}' is not in: {stderr}"
        );
        assert_eq!(
            std::fs::read(self.path("y.npy")).unwrap(),
            PRECIOUS,
            "{case}: the output was touched"
        );
        assert_eq!(self.listing(), before, "{case}: files were left behind");
    }

    fn listing(&self) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn the_valid_problem_the_cases_start_from_runs() {
    // Without this, every refusal below could be a refusal of the starting point.
    let workspace = Workspace::new();
    let args = workspace.run_args(&[("--output", &workspace.arg("fresh.npy"))]);
    let output = gconv(&args);
    assert!(output.status.success(), "{output:?}");
    assert!(workspace.path("fresh.npy").is_file());
}

#[test]
fn missing_unreadable_and_wrong_kinds_of_files() {
    let workspace = Workspace::new();
    std::fs::create_dir(workspace.path("directory.npy")).unwrap();
    let (x, absent, directory) = (
        workspace.arg("x.npy"),
        workspace.arg("absent.npy"),
        workspace.arg("directory.npy"),
    );
    let through_a_file = format!("{x}/w.npy");
    let in_missing_directory = workspace.arg("absent/y.npy");
    let cases: [Case; 6] = [
        ("missing input", vec![("--input", &absent)], "cannot read"),
        (
            "directory as input",
            vec![("--input", &directory)],
            "is a directory",
        ),
        (
            "a path through a file",
            vec![("--weight", &through_a_file)],
            "Not a directory",
        ),
        (
            "directory as output",
            vec![("--output", &directory)],
            "is a directory",
        ),
        (
            "output in a missing directory",
            vec![("--output", &in_missing_directory)],
            "cannot write",
        ),
        (
            "output equal to input",
            vec![("--output", &x)],
            "same file as --input",
        ),
    ];
    for (case, changes, expected) in cases {
        workspace.expect_refusal(case, &workspace.run_args(&changes), expected);
    }
    // The input that --output tried to replace is intact.
    assert_eq!(
        std::fs::read(workspace.path("x.npy")).unwrap(),
        npy("<f4", false, "(1, 4, 5, 5)", &floats(100))
    );
}

#[test]
fn unreadable_input_and_unwritable_output() {
    let workspace = Workspace::new();
    // Unreadable for every user, root included: reading it fails with EIO.
    workspace.expect_refusal(
        "an input that cannot be read",
        &workspace.run_args(&[("--input", "/proc/self/mem")]),
        "cannot read /proc/self/mem",
    );
    // No file can be created in /proc, and /proc/version must stay as it is.
    let version = std::fs::read("/proc/version").unwrap();
    workspace.expect_refusal(
        "an output where nothing can be written",
        &workspace.run_args(&[("--output", "/proc/version")]),
        "cannot write /proc/version",
    );
    assert_eq!(std::fs::read("/proc/version").unwrap(), version);
    // Opening a FIFO for reading would wait for a writer forever.
    let fifo = workspace.path("fifo.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    workspace.expect_refusal(
        "a FIFO as input",
        &workspace.run_args(&[("--weight", fifo.to_str().unwrap())]),
        "not a regular file",
    );
}

#[test]
fn files_and_directories_without_permission() {
    use std::os::unix::fs::PermissionsExt;
    let workspace = Workspace::new();
    let locked = workspace.write(
        "locked.npy",
        &npy("<f4", false, "(1, 4, 5, 5)", &floats(100)),
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_ok() {
        // Root reads and writes through permissions; the test above covers unreadable and
        // unwritable paths for every user.
        eprintln!("skipped: permissions do not bind this user (root)");
        return;
    }
    let read_only = workspace.path("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    workspace.expect_refusal(
        "unreadable input",
        &workspace.run_args(&[("--input", &locked)]),
        "Permission denied",
    );
    let into_read_only = read_only.join("y.npy");
    workspace.expect_refusal(
        "unwritable output directory",
        &workspace.run_args(&[("--output", into_read_only.to_str().unwrap())]),
        "Permission denied",
    );
    assert!(!into_read_only.exists());
}

#[test]
fn malformed_npy_files() {
    let workspace = Workspace::new();
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "float64",
            npy("<f8", false, "(1, 4, 5, 5)", &[0; 800]),
            "only float32",
        ),
        (
            "int32",
            npy("<i4", false, "(1, 4, 5, 5)", &[0; 400]),
            "only float32",
        ),
        (
            "Fortran order",
            npy("<f4", true, "(1, 4, 5, 5)", &floats(100)),
            "Fortran order",
        ),
        (
            "truncated data",
            npy("<f4", false, "(1, 4, 5, 5)", &floats(99)),
            "bytes of data follow",
        ),
        (
            "a header claiming terabytes",
            npy("<f4", false, "(1000000, 1000000, 1000, 1000)", &floats(100)),
            "declares 1000000000000000000 elements",
        ),
        (
            "a dimension beyond u64",
            npy(
                "<f4",
                false,
                "(1, 99999999999999999999999, 5, 5)",
                &floats(100),
            ),
            "negative or too large",
        ),
        ("not a .npy file", b"PK\x03\x04 a zip".to_vec(), "magic"),
    ];
    for (case, bytes, expected) in cases {
        let input = workspace.write("bad.npy", &bytes);
        workspace.expect_refusal(case, &workspace.run_args(&[("--input", &input)]), expected);
    }
    let empty = workspace.write("empty.npy", b"");
    workspace.expect_refusal(
        "empty file",
        &workspace.run_args(&[("--weight", &empty)]),
        "magic",
    );
}

#[test]
fn shapes_that_disagree_with_the_flags() {
    let workspace = Workspace::new();
    let rank3 = workspace.write("rank3.npy", &npy("<f4", false, "(4, 5, 5)", &floats(100)));
    let bias5 = workspace.write("bias5.npy", &npy("<f4", false, "(5,)", &floats(5)));
    let cases: [Case; 6] = [
        // As PyTorch: the weight and the groups say how many channels the input must have.
        (
            "groups that leave the input wrong",
            vec![("--groups", "4")],
            "weight [4, 2, 3, 3] with --groups 4 expects in_channels = 8: input [1, 4, 5, 5] \
             must have in_channels (8) channels",
        ),
        (
            "groups that do not divide",
            vec![("--groups", "3")],
            "out_channels (4) must be divisible by groups (3)",
        ),
        (
            "an input of rank 3",
            vec![("--input", &rank3)],
            "input must have 4 dimensions",
        ),
        (
            "a bias of the wrong length",
            vec![("--bias", &bias5)],
            "bias must have shape [4], got [5]",
        ),
        (
            "a kernel larger than the padded input",
            vec![("--padding", "0"), ("--dilation", "3")],
            "effective kernel height (7",
        ),
        (
            "same padding with a stride",
            vec![("--padding", "same"), ("--stride", "2")],
            "padding 'same' is not supported for strided convolutions",
        ),
    ];
    for (case, changes, expected) in cases {
        workspace.expect_refusal(case, &workspace.run_args(&changes), expected);
    }
}

#[test]
fn residuals_and_activations_that_cannot_be_applied() {
    let workspace = Workspace::new();
    // The output is [1, 4, 5, 5]: a residual of the same elements in another shape is refused.
    let transposed = workspace.write(
        "r_transposed.npy",
        &npy("<f4", false, "(1, 5, 5, 4)", &floats(100)),
    );
    let short = workspace.write(
        "r_short.npy",
        &npy("<f4", false, "(1, 4, 5, 4)", &floats(80)),
    );
    let float64 = workspace.write("r_f8.npy", &npy("<f8", false, "(1, 4, 5, 5)", &[0u8; 800]));
    let missing = workspace.arg("absent.npy");
    let cases: [Case; 7] = [
        (
            "a residual of another shape",
            vec![("--residual", &transposed)],
            "has shape [1, 5, 5, 4]; it must have the output's shape [1, 4, 5, 5]",
        ),
        (
            "a residual too short",
            vec![("--residual", &short)],
            "it must have the output's shape [1, 4, 5, 5]",
        ),
        ("a float64 residual", vec![("--residual", &float64)], "<f8"),
        (
            "a missing residual",
            vec![("--residual", &missing)],
            "absent.npy",
        ),
        (
            "an unknown activation",
            vec![("--activation", "gelu")],
            "activation 'gelu': no such activation",
        ),
        (
            "a NaN bound",
            vec![("--activation", "clamp:0,nan")],
            "a parameter is NaN",
        ),
        (
            "clamp without its bounds",
            vec![("--activation", "clamp")],
            "clamp takes two bounds",
        ),
    ];
    for (case, changes, expected) in cases {
        workspace.expect_refusal(case, &workspace.run_args(&changes), expected);
    }
    // The residual may not be overwritten by the output either.
    let residual = workspace.write("r.npy", &npy("<f4", false, "(1, 4, 5, 5)", &floats(100)));
    let args = workspace.run_args(&[("--residual", &residual), ("--output", &residual)]);
    let output = gconv(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("same file as --residual"), "{stderr}");
    assert_eq!(
        std::fs::read(workspace.path("r.npy")).unwrap(),
        npy("<f4", false, "(1, 4, 5, 5)", &floats(100))
    );
}

#[test]
fn absurd_flag_values() {
    let workspace = Workspace::new();
    let huge = usize::MAX.to_string();
    let cases: [Case; 10] = [
        (
            "zero groups",
            vec![("--groups", "0")],
            "groups must be at least 1, got 0",
        ),
        (
            "zero stride",
            vec![("--stride", "0")],
            "stride height must be at least 1",
        ),
        (
            "zero dilation",
            vec![("--dilation", "1,0")],
            "dilation width must be at least 1",
        ),
        ("negative groups", vec![("--groups", "-2")], "'-2'"),
        (
            "a non-number",
            vec![("--stride", "two")],
            "'two' is not a non-negative integer",
        ),
        (
            "a number beyond usize",
            vec![("--padding", "99999999999999999999999")],
            "fits in usize",
        ),
        ("usize::MAX padding", vec![("--padding", &huge)], "overflow"),
        (
            "padding that asks for terabytes",
            vec![("--padding", "300000"), ("--kernel", "reference")],
            "more memory than can be allocated",
        ),
        (
            "padding too large for the fast kernels",
            vec![("--padding", "300000")],
            "too large",
        ),
        ("zero threads", vec![("--threads", "0")], "--threads"),
    ];
    for (case, changes, expected) in cases {
        workspace.expect_refusal(case, &workspace.run_args(&changes), expected);
    }
    for (case, args, expected) in [
        (
            "shape: channels beyond usize",
            vec![
                "shape",
                "--in-channels",
                "1e9",
                "--out-channels",
                "4",
                "--kernel",
                "3",
            ],
            "'1e9'",
        ),
        (
            "shape: a weight count that overflows",
            vec![
                "shape",
                "--in-channels",
                &huge,
                "--out-channels",
                &huge,
                "--kernel",
                "3",
            ],
            "overflow",
        ),
        (
            "bench: a negative minimum time",
            vec!["bench", "--min-time", "-1"],
            "--min-time",
        ),
        (
            "bench: an unknown tier",
            vec!["bench", "--isa", "sse9"],
            "sse9",
        ),
    ] {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        workspace.expect_refusal(case, &args, expected);
    }
}

#[test]
fn compare_fails_on_a_regression_and_passes_on_noise() {
    let workspace = Workspace::new();
    let root = workspace.path("criterion");
    let save = |baseline: &str, median: f64, spread: f64| {
        let directory = root.join("net/layer/avx2_t1").join(baseline);
        std::fs::create_dir_all(&directory).unwrap();
        let benchmark =
            r#"{"group_id":"net","full_id":"net/layer/avx2/t1","throughput":{"Elements":1000}}"#;
        let estimates = format!(
            r#"{{"median":{{"point_estimate":{median},"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}}}}}}"#,
            median - spread,
            median + spread
        );
        std::fs::write(directory.join("benchmark.json"), benchmark).unwrap();
        std::fs::write(directory.join("estimates.json"), estimates).unwrap();
    };
    save("before", 100.0, 1.0);
    save("after", 130.0, 1.0);
    save("noisy", 104.0, 6.0);
    let compare = |candidate: &str| {
        let args: Vec<String> = ["compare", "before", candidate, "--criterion-dir"]
            .iter()
            .map(|arg| arg.to_string())
            .chain([root.to_str().unwrap().to_string()])
            .collect();
        gconv(&args)
    };
    let slower = compare("after");
    assert!(!slower.status.success());
    let table = String::from_utf8_lossy(&slower.stdout);
    assert!(
        table.contains("+30.0%") && table.contains("SLOWER"),
        "{table}"
    );
    let stderr = String::from_utf8_lossy(&slower.stderr);
    assert!(
        stderr.contains("1 of 1 benchmarks are slower by more than 5%"),
        "{stderr}"
    );

    let noisy = compare("noisy");
    assert!(noisy.status.success(), "{noisy:?}");
    assert!(String::from_utf8_lossy(&noisy.stdout).contains("no change beyond noise"));

    workspace.expect_refusal(
        "compare: an unsaved baseline",
        &[
            "compare",
            "before",
            "never",
            "--criterion-dir",
            root.to_str().unwrap(),
        ]
        .map(String::from),
        "--save-baseline never",
    );
}
