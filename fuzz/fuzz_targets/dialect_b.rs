//! Fuzzes the dialect_b decoders of kioskd-protocol (`kioskd_protocol::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kioskd_protocol::decode::decode("dialect_b", data);
});
