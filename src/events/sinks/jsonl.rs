//! JSON lines to a file or standard output, one event per line, flushed per event so a reader
//! (`tail -f`, a crashed run's remains) always sees whole events.

use crate::events::sink::{Encoded, Sink};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes events as JSON lines.
pub struct JsonlSink {
    out: Box<dyn Write + Send>,
    what: String,
}

impl JsonlSink {
    /// Creates (truncates) `path`, making its folder; `None` writes to standard output.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            None => Self {
                out: Box::new(std::io::stdout()),
                what: "standard output".into(),
            },
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create folder {}", dir.display()))?;
                }
                let f =
                    File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
                Self {
                    out: Box::new(BufWriter::new(f)),
                    what: PathBuf::from(p).display().to_string(),
                }
            }
        })
    }
}

impl Sink for JsonlSink {
    fn deliver(&mut self, ev: &std::sync::Arc<Encoded>) -> Result<()> {
        let w = &mut self.out;
        w.write_all(ev.json.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
            .with_context(|| format!("cannot write event to {}", self.what))
    }

    fn finish(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot flush {}", self.what))
    }
}
