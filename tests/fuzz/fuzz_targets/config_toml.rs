//! Configuration text: parsing and validation never panic.
#![no_main]

use control::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml_str(text, "fuzz.toml", std::path::Path::new("/nonexistent"));
    }
});
