//! Topic filter and name validation and matching on arbitrary input: a filter and a name separated by a 0xFF byte.
//! Matching is compared with an independent reference, and valid topics must survive a SUBSCRIBE / PUBLISH round
//! trip. The check is shared with `cargo test` (crates/corvid-protocol/tests/fuzz_replay.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/corvid-protocol/tests/support/fuzz_check.rs"]
mod fuzz_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_check::check_topic(data);
});
