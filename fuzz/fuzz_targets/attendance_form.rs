//! Fuzzes kioskd's attendance_form decoders (`kioskd::http::fuzz_replay::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kioskd::http::fuzz_replay::decode("attendance_form", data);
});
