//! Annotation spreadsheets (.xlsx/.xls/.ods through calamine, .csv through csv) as rows of cells
//! numbered the way Excel numbers them, so that every problem can name its file and row.

use anyhow::{Context, Result, anyhow, bail};
use calamine::{Data, Reader, open_workbook_auto};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing in the cell.
    Empty,
    /// A number (Excel stores integers as floats).
    Number(f64),
    /// Text (CSV cells are always text).
    Text(String),
}

impl Cell {
    /// Whether the cell holds nothing but whitespace.
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Number(_) => false,
            Cell::Text(t) => t.trim().is_empty(),
        }
    }

    /// The cell as trimmed text; integral numbers without a decimal point ("12", not "12.0").
    pub fn text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
            Cell::Number(v) => format!("{v}"),
            Cell::Text(t) => t.trim().to_string(),
        }
    }
}

/// A frame number cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameValue {
    /// A frame number.
    Known(u32),
    /// Written as unknown: "/", "-", empty, "-1", "n/a".
    Unknown,
}

/// Reads a frame number; unknown markers give [`FrameValue::Unknown`], anything else an error.
pub fn frame_value(cell: &Cell) -> Result<FrameValue, String> {
    match cell {
        Cell::Empty => Ok(FrameValue::Unknown),
        Cell::Number(v) => {
            if *v == -1.0 {
                Ok(FrameValue::Unknown)
            } else if v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f64 {
                Ok(FrameValue::Known(*v as u32))
            } else {
                Err(format!("{v} is not a frame number"))
            }
        }
        Cell::Text(t) => {
            let t = t.trim();
            match t.to_ascii_lowercase().as_str() {
                "" | "/" | "-" | "-1" | "n/a" | "na" | "?" => Ok(FrameValue::Unknown),
                _ => {
                    let n: f64 = t
                        .parse()
                        .map_err(|_| format!("{t:?} is not a frame number"))?;
                    frame_value(&Cell::Number(n))
                }
            }
        }
    }
}

/// One row of a sheet.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based row number as Excel shows it (CSV: line of the record, header = 1).
    pub number: usize,
    /// Cells from column A on.
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell in column `i` (Empty past the end).
    pub fn get(&self, i: usize) -> &Cell {
        self.cells.get(i).unwrap_or(&Cell::Empty)
    }

    /// Whether every cell is blank.
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_blank)
    }
}

/// A sheet read whole.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file.
    pub file: PathBuf,
    /// Sheet name ("" for CSV).
    pub sheet: String,
    /// Every row, blank ones included, in order.
    pub rows: Vec<Row>,
}

/// The largest annotation file read (bytes on disk; a zipped workbook's parts unpacked).
pub const MAX_SHEET_BYTES: u64 = 256 << 20;
/// The most characters one cell may hold (annotation cells are codes, numbers and short notes).
pub const MAX_CELL_CHARS: usize = 10_000;

/// Refuses a file, or a workbook whose unpacked parts, larger than [`MAX_SHEET_BYTES`] before
/// anything is parsed: a 1 MB spreadsheet can unpack to gigabytes.
fn check_size(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_SHEET_BYTES {
        bail!(
            "{}: {len} bytes; annotation files are read up to {MAX_SHEET_BYTES} bytes",
            path.display()
        );
    }
    let mut head = [0u8; 4];
    let zipped = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == *b"PK\x03\x04";
    if zipped {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut z = zip::ZipArchive::new(std::io::BufReader::new(f))
            .with_context(|| format!("{}: not a readable workbook (zip)", path.display()))?;
        let mut total = 0u64;
        for i in 0..z.len() {
            let e = z
                .by_index_raw(i)
                .with_context(|| format!("{}: damaged workbook (zip entry {i})", path.display()))?;
            total = total.saturating_add(e.size());
            if total > MAX_SHEET_BYTES {
                bail!(
                    "{}: its parts unpack to more than {MAX_SHEET_BYTES} bytes ({} alone is {} bytes); not read",
                    path.display(),
                    e.name(),
                    e.size()
                );
            }
        }
    }
    Ok(())
}

/// Refuses a cell longer than [`MAX_CELL_CHARS`], naming where it is (the text is not repeated).
fn check_cell(path: &Path, sheet: &str, row: usize, col: usize, cell: &Cell) -> Result<()> {
    if let Cell::Text(t) = cell
        && t.len() > MAX_CELL_CHARS
        && t.chars().count() > MAX_CELL_CHARS
    {
        let at = if sheet.is_empty() {
            String::new()
        } else {
            format!(" sheet {sheet:?}")
        };
        bail!(
            "{}{at} row {row} column {}: a cell of {} characters; annotation cells hold at most {MAX_CELL_CHARS}",
            path.display(),
            column_name(col),
            t.chars().count()
        );
    }
    Ok(())
}

/// Excel's name of 0-based column `i` (A, B, ..., Z, AA, ...).
pub fn column_name(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Names of the sheets in a workbook (empty for CSV).
pub fn sheet_names(path: &Path) -> Result<Vec<String>> {
    if is_csv(path) {
        return Ok(Vec::new());
    }
    check_size(path)?;
    let wb = open_workbook_auto(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(wb.sheet_names())
}

/// Reads sheet number `index` (0 = first) of a workbook, or the CSV file.
pub fn read_table(path: &Path, index: usize) -> Result<Table> {
    if is_csv(path) {
        if index != 0 {
            bail!("{}: a CSV file has one sheet", path.display());
        }
        return read_csv(path);
    }
    check_size(path)?;
    let mut wb =
        open_workbook_auto(path).with_context(|| format!("cannot open {}", path.display()))?;
    let names = wb.sheet_names();
    let name = names
        .get(index)
        .cloned()
        .ok_or_else(|| anyhow!("{}: has no sheet number {}", path.display(), index + 1))?;
    let range = wb
        .worksheet_range(&name)
        .with_context(|| format!("cannot read sheet {name:?} of {}", path.display()))?;
    let mut rows = Vec::new();
    if let Some((r0, c0)) = range.start() {
        for (i, r) in range.rows().enumerate() {
            // calamine's range starts at the first used cell; pad so that column 0 is column A.
            let mut cells = vec![Cell::Empty; c0 as usize];
            cells.extend(r.iter().map(convert));
            let number = r0 as usize + i + 1;
            for (c, cell) in cells.iter().enumerate() {
                check_cell(path, &name, number, c, cell)?;
            }
            rows.push(Row { number, cells });
        }
    }
    Ok(Table {
        file: path.to_path_buf(),
        sheet: name,
        rows,
    })
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn convert(d: &Data) -> Cell {
    match d {
        Data::Empty => Cell::Empty,
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::String(s) => Cell::Text(s.clone()),
        Data::Bool(b) => Cell::Text(b.to_string()),
        Data::DateTime(d) => Cell::Text(d.to_string()),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Text(format!("#{e:?}")),
    }
}

fn read_csv(path: &Path) -> Result<Table> {
    check_size(path)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Line numbers from byte offsets: the parser's own count is one off on CRLF files (Excel's).
    let starts: Vec<u64> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as u64 + 1),
        )
        .collect();
    // A record's position is where the parser started, before the blank lines it skipped.
    let line_of = |byte: u64| {
        let skip = bytes.get(byte as usize..).map_or(0, |r| {
            r.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count()
        });
        starts.partition_point(|&s| s <= byte + skip as u64)
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let at = e
                .position()
                .map_or(String::new(), |p| format!(" line {}", line_of(p.byte())));
            let why = match e.kind() {
                csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8 text ({err})"),
                _ => e.to_string(),
            };
            anyhow!("cannot read {}{at}: {why}", path.display())
        })?;
        let number = rec.position().map(|p| line_of(p.byte())).unwrap_or(0);
        let cells = rec
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the first header.
                let s = if i == 0 && number <= 1 {
                    s.trim_start_matches('\u{feff}')
                } else {
                    s
                };
                if s.trim().is_empty() {
                    Cell::Empty
                } else {
                    Cell::Text(s.to_string())
                }
            })
            .collect::<Vec<_>>();
        for (c, cell) in cells.iter().enumerate() {
            check_cell(path, "", number, c, cell)?;
        }
        rows.push(Row { number, cells });
    }
    Ok(Table {
        file: path.to_path_buf(),
        sheet: String::new(),
        rows,
    })
}

/// Header names compare without case, spaces, underscores or dots ("Onset Frame" = "OnsetFrame").
pub fn normalise_header(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '.')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The header row of a table and where each named column is.
#[derive(Debug, Clone)]
pub struct Header {
    /// Index into [`Table::rows`] of the header row.
    pub index: usize,
    /// Excel row number of the header.
    pub number: usize,
    columns: HashMap<String, usize>,
}

impl Header {
    /// The column of the first alias present.
    pub fn col(&self, aliases: &[&str]) -> Option<usize> {
        aliases
            .iter()
            .find_map(|a| self.columns.get(&normalise_header(a)).copied())
    }

    /// Like [`Header::col`], but a missing column is an error naming the file and header row.
    pub fn require(&self, table: &Table, aliases: &[&str]) -> Result<usize> {
        self.col(aliases).ok_or_else(|| {
            anyhow!(
                "{}: no column {:?} in the header on row {} (columns: {})",
                table.file.display(),
                aliases[0],
                self.number,
                self.names().join(", ")
            )
        })
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<(usize, String)> =
            self.columns.iter().map(|(k, i)| (*i, k.clone())).collect();
        v.sort();
        v.into_iter().map(|(_, k)| k).collect()
    }
}

impl Table {
    /// Finds the header: the first row within the first `within` rows that has a cell for each of
    /// `required` (normalised names). SAMM-style sheets have a block of notes above it.
    pub fn find_header(&self, required: &[&str], within: usize) -> Result<Header> {
        let want: Vec<String> = required.iter().map(|r| normalise_header(r)).collect();
        for (index, row) in self.rows.iter().enumerate().take(within) {
            let mut columns = HashMap::new();
            for (i, c) in row.cells.iter().enumerate() {
                let name = normalise_header(&c.text());
                if !name.is_empty() {
                    columns.entry(name).or_insert(i);
                }
            }
            if want.iter().all(|w| columns.contains_key(w)) {
                return Ok(Header {
                    index,
                    number: row.number,
                    columns,
                });
            }
        }
        bail!(
            "{}{}: no header row with columns {} in its first {within} rows",
            self.file.display(),
            if self.sheet.is_empty() {
                String::new()
            } else {
                format!(" (sheet {:?})", self.sheet)
            },
            required.join(", ")
        )
    }

    /// Rows after the header that are not blank.
    pub fn records(&self, header: &Header) -> impl Iterator<Item = &Row> {
        self.rows[header.index + 1..]
            .iter()
            .filter(|r| !r.is_blank())
    }
}

/// A matcher for [`find_annotation_file`]: names starting with `prefix` (case-insensitive, lower-case
/// prefix) that are .xlsx or .csv sheets.
pub fn sheet_named(prefix: &'static str) -> impl Fn(&str) -> bool {
    move |n: &str| {
        let l = n.to_ascii_lowercase();
        l.starts_with(prefix) && (l.ends_with(".xlsx") || l.ends_with(".csv"))
    }
}

/// Finds a dataset's annotation file: `explicit` if given, else the one file in `root` (or one
/// folder below it) whose name satisfies `matches`. Several candidates are an error listing them.
pub fn find_annotation_file(
    root: &Path,
    explicit: Option<&Path>,
    matches: impl Fn(&str) -> bool,
    expected: &str,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        let p = if p.is_relative() && !p.exists() {
            root.join(p)
        } else {
            p.to_path_buf()
        };
        if !p.is_file() {
            bail!("annotation file {} does not exist", p.display());
        }
        return Ok(p);
    }
    if !root.is_dir() {
        bail!("dataset folder {} does not exist", root.display());
    }
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    for depth in 0..2 {
        let mut next = Vec::new();
        for d in &dirs {
            let Ok(rd) = std::fs::read_dir(d) else {
                continue;
            };
            let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if p.is_dir() {
                    next.push(p);
                } else if !name.starts_with("~$") && matches(&name) {
                    found.push(p);
                }
            }
        }
        if !found.is_empty() || depth == 1 {
            break;
        }
        dirs = next;
    }
    // The same sheet exported twice (NAME.xlsx beside NAME.csv) is one annotation: read the workbook,
    // the form the datasets are released in.
    if found.len() == 2 {
        let stem = |p: &Path| p.with_extension("");
        let is_xlsx = |p: &Path| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"))
        };
        if stem(&found[0]) == stem(&found[1]) && (is_xlsx(&found[0]) || is_xlsx(&found[1])) {
            let i = if is_xlsx(&found[0]) { 0 } else { 1 };
            return Ok(found.remove(i));
        }
    }
    match found.len() {
        0 => bail!(
            "{}: no annotation file {expected} (here or one folder down); pass --annotations FILE",
            root.display()
        ),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "{}: several annotation files match {expected}: {}; pass --annotations FILE",
            root.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_values() {
        assert_eq!(frame_value(&Cell::Number(46.0)), Ok(FrameValue::Known(46)));
        assert_eq!(
            frame_value(&Cell::Text(" 46 ".into())),
            Ok(FrameValue::Known(46))
        );
        for unknown in ["/", "-", "", "-1", "n/a"] {
            assert_eq!(
                frame_value(&Cell::Text(unknown.into())),
                Ok(FrameValue::Unknown)
            );
        }
        assert_eq!(frame_value(&Cell::Number(-1.0)), Ok(FrameValue::Unknown));
        assert!(frame_value(&Cell::Number(4.5)).is_err());
        assert!(frame_value(&Cell::Text("x12".into())).is_err());
    }

    #[test]
    fn numbers_print_like_excel_shows_them() {
        assert_eq!(Cell::Number(12.0).text(), "12");
        assert_eq!(Cell::Text(" 4+L10 ".into()).text(), "4+L10");
    }

    #[test]
    fn crlf_csv_rows_are_numbered_like_lf_ones_and_long_cells_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for eol in ["\n", "\r\n"] {
            let p = dir.path().join("a.csv");
            let text = ["Subject,Onset", "1,10", "", "2,\"multi", "line\"", "3,30"].join(eol);
            std::fs::write(&p, text + eol).unwrap();
            let t = read_table(&p, 0).unwrap();
            let numbers: Vec<usize> = t.rows.iter().map(|r| r.number).collect();
            // The blank line is skipped by the parser; the quoted cell spans lines 4-5.
            assert_eq!(numbers, [1, 2, 4, 6], "{eol:?}");
            let bad = [&b"a,b"[..], b"1,2", b"3,\xff"].join(eol.as_bytes());
            std::fs::write(&p, bad).unwrap();
            let err = format!("{:#}", read_table(&p, 0).unwrap_err());
            assert!(
                err.contains("a.csv line 3") && err.contains("UTF-8"),
                "{eol:?}: {err}"
            );
        }
        let p = dir.path().join("long.csv");
        std::fs::write(&p, format!("a,b\n1,{}\n", "x".repeat(MAX_CELL_CHARS + 1))).unwrap();
        let err = format!("{:#}", read_table(&p, 0).unwrap_err());
        assert!(err.contains("row 2 column B") && err.len() < 300, "{err}");
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(27), "AB");
    }

    #[test]
    fn a_workbook_that_unpacks_to_gigabytes_is_refused_before_parsing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.xlsx");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        z.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
        let chunk = vec![b'7'; 1 << 20];
        for _ in 0..(MAX_SHEET_BYTES >> 20) + 1 {
            z.write_all(&chunk).unwrap();
        }
        z.finish().unwrap();
        assert!(
            std::fs::metadata(&p).unwrap().len() < 2 << 20,
            "a small file"
        );
        let err = format!("{:#}", read_table(&p, 0).unwrap_err());
        assert!(err.contains("bomb.xlsx") && err.contains("unpack"), "{err}");
        let err = format!("{:#}", sheet_names(&p).unwrap_err());
        assert!(err.contains("unpack"), "{err}");
    }

    #[test]
    fn headers_match_loosely() {
        assert_eq!(normalise_header("Onset Frame"), "onsetframe");
        assert_eq!(normalise_header("OnsetFrame"), "onsetframe");
        assert_eq!(normalise_header("sub_ID"), "subid");
    }
}
