//! JSON lines to a file or standard output, one event per line, written with one call and
//! flushed per event so a reader (`tail -f`, a crashed run's remains) always sees whole events.
//! A write that fails part-way (a full disk, a file-size limit) is cut back to the last whole
//! line, so the file never ends in half an event.

use crate::events::sink::{Encoded, Sink};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where the lines go.
enum Out {
    Stdout(std::io::Stdout),
    /// The file and the length of its whole lines.
    File(File, u64),
}

/// Writes events as JSON lines.
pub struct JsonlSink {
    out: Out,
    what: String,
    line: Vec<u8>,
}

impl JsonlSink {
    /// Creates (truncates) `path`, making its folder; `None` writes to standard output.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let (out, what) = match path {
            None => (Out::Stdout(std::io::stdout()), "standard output".into()),
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create folder {}", dir.display()))?;
                }
                let f =
                    File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
                (Out::File(f, 0), PathBuf::from(p).display().to_string())
            }
        };
        Ok(Self {
            out,
            what,
            line: Vec::new(),
        })
    }
}

impl Sink for JsonlSink {
    fn deliver(&mut self, ev: &std::sync::Arc<Encoded>) -> Result<()> {
        self.line.clear();
        self.line.extend_from_slice(ev.json.as_bytes());
        self.line.push(b'\n');
        let r = match &mut self.out {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(&self.line).and_then(|()| s.flush())
            }
            Out::File(f, whole) => match f.write_all(&self.line) {
                Ok(()) => {
                    *whole += self.line.len() as u64;
                    Ok(())
                }
                Err(e) => {
                    // Cut the torn line off; the next event starts at the last whole line.
                    let _ = f.set_len(*whole);
                    let _ = f.seek(SeekFrom::Start(*whole));
                    Err(e)
                }
            },
        };
        r.with_context(|| format!("cannot write event to {}", self.what))
    }

    fn finish(&mut self) -> Result<()> {
        match &mut self.out {
            Out::Stdout(s) => s.flush(),
            Out::File(f, _) => f.flush(),
        }
        .with_context(|| format!("cannot flush {}", self.what))
    }
}
