//! The fuzz corpus, replayed on stable: every input in `fuzz/corpus/<target>/` (a small
//! minimized set, `cargo fuzz cmin`, plus each crash input once fixed) is run through the
//! same target body as the nightly cargo-fuzz target (`patchcord_common::fuzz`), so CI
//! keeps every path the fuzzer reached and every crash it found covered without nightly.

use std::path::Path;

use patchcord_common::fuzz::TARGETS;

#[test]
fn every_corpus_input_passes_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, body) in TARGETS {
        let dir = corpus.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{name}: no corpus in {}", dir.display());
        println!("{name}: {inputs} inputs");
    }
}
