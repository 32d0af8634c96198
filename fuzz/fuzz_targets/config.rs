//! Arbitrary text as a config file: an error naming a line, never a panic.
#![no_main]

use jwtgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let secret = || Some("fuzz-secret-0123456789abcdef-0123456789-and-more-bytes-for-hs512!".to_owned());
    if let Err(err) = Config::from_toml_str(text, "fuzz.toml", &|_| secret()) {
        let _ = err.to_string();
    }
});
