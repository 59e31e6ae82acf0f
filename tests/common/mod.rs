//! Fixture builders for the dataset tests: spreadsheets in the datasets' published shapes and tiny
//! JPEG frames, all written by the tests.
#![allow(dead_code)]

use opencv::core::{Mat, Scalar};
use std::path::Path;

/// A cell to write.
#[derive(Clone, Debug)]
pub enum X {
    /// Text.
    S(&'static str),
    /// Owned text.
    T(String),
    /// Number.
    N(f64),
    /// Nothing.
    E,
}

/// Writes an .xlsx workbook: one (name, rows) per sheet, rows from row 1 (index 0).
pub fn xlsx(path: &Path, sheets: &[(&str, Vec<Vec<X>>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = rust_xlsxwriter::Workbook::new();
    for (name, rows) in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(*name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let (r, c) = (r as u32, c as u16);
                match cell {
                    X::S(s) => {
                        ws.write_string(r, c, *s).unwrap();
                    }
                    X::T(s) => {
                        ws.write_string(r, c, s).unwrap();
                    }
                    X::N(v) => {
                        ws.write_number(r, c, *v).unwrap();
                    }
                    X::E => {}
                }
            }
        }
    }
    wb.save(path).unwrap();
}

/// Writes an 8x8 gray JPEG (what the loaders need to find; content is irrelevant).
pub fn jpg(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let m =
        Mat::new_rows_cols_with_default(8, 8, opencv::core::CV_8UC1, Scalar::all(128.0)).unwrap();
    assert!(
        aullm::imgio::imwrite(path, &m, &[]).unwrap(),
        "cannot write {}",
        path.display()
    );
}

/// Writes frames `dir/<prefix><n padded>.jpg` for n in `range`.
pub fn frames(dir: &Path, prefix: &str, pad: usize, range: std::ops::RangeInclusive<u32>) {
    for n in range {
        jpg(&dir.join(format!("{prefix}{n:0pad$}.jpg")));
    }
}
