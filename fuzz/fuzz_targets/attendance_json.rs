//! Fuzzes the attendance_json decoders of kioskd-protocol (`kioskd_protocol::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kioskd_protocol::decode::decode("attendance_json", data);
});
