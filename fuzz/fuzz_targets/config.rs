//! A configuration file: loaded (every value inside its range) or refused naming a key or a place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lab.toml");
    std::fs::write(&path, data).expect("write");
    if let Ok(cfg) = aullm::config::Config::load(Some(&path), &[]) {
        aullm::config::ranges::check(&cfg).expect("a loaded configuration is inside its ranges");
    }
});
