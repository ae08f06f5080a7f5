//! Fuzzes kioskd's iclock_lines decoders (`kioskd::http::fuzz_replay::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kioskd::http::fuzz_replay::decode("iclock_lines", data);
});
