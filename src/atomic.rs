//! Files that appear complete or not at all: written to a temporary name, renamed when finished.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A buffered file written under `NAME.PID.partial` and renamed to `NAME` by [`AtomicFile::commit`]
/// (the process id keeps two processes writing the same file, e.g. LOSO shards' reports, apart).
pub struct AtomicFile {
    writer: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.partial", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            writer: BufWriter::new(file),
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.writer
            .flush()
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        self.writer
            .get_ref()
            .sync_all()
            .with_context(|| format!("cannot sync {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.tmp.display(),
                self.path.display()
            )
        })?;
        Ok(self.path.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}
