//! Decodes arbitrary bytes under every protocol version and packet size limit; each packet that decodes is
//! re-encoded and decoded again, and must come back equal. Feeding the bytes split at any position must give the
//! same results, and the decoder must never reserve past the limit. The check is shared with `cargo test`
//! (crates/corvid-protocol/tests/fuzz_replay.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/corvid-protocol/tests/support/fuzz_check.rs"]
mod fuzz_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_check::check_decode(data);
});
