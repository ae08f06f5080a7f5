//! Fuzzes the phone decoders of kioskd-protocol (`kioskd_protocol::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kioskd_protocol::decode::decode("phone", data);
});
