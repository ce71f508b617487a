//! Replays every file of the checked-in fuzz corpora (`fuzz/corpus/<target>/`) through its
//! target, so that `cargo test` keeps guarding every case the fuzzers found or were seeded
//! with.

use std::fs;
use std::path::PathBuf;

use gconv_fuzz_targets::TARGETS;

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_corpus_file_passes_its_target() {
    for (name, target) in TARGETS {
        let directory = corpus_root().join(name);
        let mut files: Vec<PathBuf> = fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
            .map(|entry| entry.expect("a readable directory entry").path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "{}: a corpus of {} files is no seed corpus",
            directory.display(),
            files.len()
        );
        for file in &files {
            let bytes =
                fs::read(file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            // A panic names the file, so that a failure can be replayed with the fuzzer.
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{} fails target {name}", file.display());
        }
    }
}
