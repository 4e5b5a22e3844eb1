//! Replays every saved fuzzing input (`fuzz/corpus/<target>/*`) through its target's body on the
//! stable toolchain, so `cargo test` catches a regression that fuzzing once found or covered.
//! Fuzzing itself needs nightly: see the README, "Fuzzing".

use std::fs;
use std::path::Path;

use backstop::fuzzing::TARGETS;

#[test]
fn every_corpus_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} has no inputs", dir.display());
        for path in inputs {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name}: {} panicked", path.display());
        }
    }
}
