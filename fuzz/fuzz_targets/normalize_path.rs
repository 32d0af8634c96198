//! Arbitrary paths: normalisation never panics, is idempotent, yields a
//! path without dot or empty segments, and accepts only what it can decode.
#![no_main]

use jwtgate::routes::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(path) else {
        return;
    };
    assert!(normal.starts_with('/'));
    assert!(!normal.contains("//"), "{path:?} -> {normal:?}");
    assert!(
        !normal.split('/').any(|s| s == "." || s == ".."),
        "{path:?} -> {normal:?}"
    );
    assert!(!normal.contains('\\') && !normal.contains(';'));
    assert_eq!(normalize(&normal).as_deref(), Ok(&*normal), "not idempotent");
});
