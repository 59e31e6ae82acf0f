//! Files that appear complete or not at all: written to a temporary name, renamed when finished.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A buffered file written under `NAME.PID-N.partial` and renamed to `NAME` by [`AtomicFile::commit`]
/// (the process id and a per-process count keep two writers of the same file apart, e.g. LOSO
/// shards' reports, whether they are processes or threads of one process).
/// Dropped without a commit (an error on the way), it removes its temporary file.
pub struct AtomicFile {
    writer: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        // Threads of one process (shards run in one test, or a library user's pool) share the id.
        static WRITERS: AtomicU64 = AtomicU64::new(0);
        let n = WRITERS.fetch_add(1, Ordering::Relaxed);
        tmp.push(format!(".{}-{n}.partial", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            writer: BufWriter::new(file),
            tmp,
            path: path.to_path_buf(),
            committed: false,
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
        self.committed = true;
        Ok(self.path.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the temporary files [`AtomicFile`] and the video writer leave in `dir` (not below it)
/// when a process dies before finishing them (kill -9, power loss); returns how many.
pub fn sweep_partials(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_dropped_before_commit_leaves_nothing_and_sweeps_remove_only_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        std::fs::write(&p, "previous").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["summary.json"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "previous");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");

        std::fs::write(dir.path().join("events.jsonl.123.partial"), "x").unwrap();
        std::fs::write(dir.path().join("crops.mkv.partial"), "x").unwrap();
        std::fs::create_dir(dir.path().join("keep.partial")).unwrap();
        assert_eq!(sweep_partials(dir.path()), 2);
        assert!(dir.path().join("keep.partial").is_dir());
        assert!(p.exists());
    }

    #[test]
    fn two_writers_of_one_file_in_one_process_both_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("result.json");
        let mut a = AtomicFile::create(&p).unwrap();
        let mut b = AtomicFile::create(&p).unwrap();
        a.write_all(b"same").unwrap();
        b.write_all(b"same").unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "same");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
