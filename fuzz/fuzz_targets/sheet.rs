//! Annotation spreadsheets: bytes read as a CSV file, or (when they start like a zip) as an
//! .xlsx workbook: every row is read or the file is refused, never a panic or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = if data.starts_with(b"PK") {
        "a.xlsx"
    } else {
        "a.csv"
    };
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("write");
    if let Ok(t) = aullm::data::sheet::read_table(&path, 0) {
        for r in &t.rows {
            assert!(r.number >= 1, "rows are numbered from 1");
        }
    }
});
