//! The server-side decoders behind the `iclock_lines` and `attendance_form` fuzz targets
//! (`fuzz/`), and a test replaying their corpus (`fuzz/corpus/<target>/`) on stable.
//! The protocol crate's decoders have their own (`kioskd_protocol::decode`).

/// The fuzz targets served here.
pub const TARGETS: &[&str] = &["iclock_lines", "attendance_form"];

/// Runs every decoder of `target` over `data`; `false` for an unknown target.
pub fn decode(target: &str, data: &[u8]) -> bool {
    match target {
        "iclock_lines" => {
            use super::iclock::{
                attlog_lines, operlog_lines, result_lines, to_gbk, without_user_secrets,
            };
            let text = super::iclock::decode(data);
            let (punches, bad) = attlog_lines(&text);
            assert!(
                punches.len() + bad.len() <= text.split(['\n', '\r']).count(),
                "at most one record per line"
            );
            let _ = operlog_lines(&text);
            let _ = result_lines(&text);
            let _ = to_gbk(&text);
            for line in text.lines() {
                let stripped = without_user_secrets(line);
                assert!(
                    !line.contains("USERINFO")
                        || !stripped
                            .split('\t')
                            .any(|f| f.trim().starts_with("Passwd=") && f.trim().len() > 7),
                    "no password left in a USERINFO line"
                );
            }
        }
        "attendance_form" => {
            if let Ok(fields) = super::attendance::fields(data) {
                for v in fields.values() {
                    let _ = super::attendance::new_record(v);
                    let _ = super::attendance::sync_records(v);
                }
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_corpus_replays_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut n = 0;
        for t in super::TARGETS {
            let dir = root.join(t);
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let p = e.unwrap().path();
                let data = std::fs::read(&p).unwrap();
                assert!(super::decode(t, &data));
                n += 1;
            }
        }
        assert!(n >= 6, "the corpus is there ({n} files)");
    }
}
