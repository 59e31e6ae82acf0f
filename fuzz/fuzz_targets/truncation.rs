//! The truncation check of AVI, MP4/MOV and Matroska files: any bytes give a verdict, quickly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v.bin");
    std::fs::write(&path, data).expect("write");
    let _ = aullm::ingest::container::truncation(&path);
});
