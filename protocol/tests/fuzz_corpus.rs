//! Replays every file of the fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! decoders the cargo-fuzz targets run (`kioskd_protocol::decode`), on stable, so a
//! crash once found and added to the corpus stays fixed.

use kioskd_protocol::decode::{TARGETS, decode};

#[test]
fn every_corpus_file_decodes_without_a_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for t in TARGETS {
        let dir = root.join(t);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            assert!(decode(t, &data), "{t} is a target");
            n += 1;
        }
        assert!(n > 0, "{t} has a corpus");
    }
    assert!(!decode("no_such_target", b""));
}
