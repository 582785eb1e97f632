//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod fuzz_check;

/// Bytes from hex digits, ignoring whitespace: `"10 0C 00"`.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits in {s:?}");
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("bad hex {pair:?} in {s:?}"))
        })
        .collect()
}
