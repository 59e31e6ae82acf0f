//! The local artefact cache: `<root>/<name>/<file>`, each file checked against its SHA-256.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, anyhow, bail};

use super::fetch::{self, WorkDir, sha256_file};
use super::manifest::Artefact;

/// Environment variable that overrides the cache location.
pub const CACHE_DIR_ENV: &str = "AULLM_CACHE_DIR";

/// Suffix of the stamp file written next to a verified artefact.
const STAMP_SUFFIX: &str = ".verified";

/// What the cache holds for one artefact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtefactStatus {
    /// No file at the artefact's path.
    Missing,
    /// The file is there and its SHA-256 matches the manifest.
    Ok,
    /// The file is there but differs (`actual` is its hash, or why it could not be read).
    Mismatch {
        /// The file's SHA-256, or "unreadable: <reason>".
        actual: String,
    },
}

/// What `ModelCache::fetch` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A verified copy was already in the cache; nothing was run.
    AlreadyPresent,
    /// The file was fetched, verified and stored at this path.
    Fetched(PathBuf),
}

/// The directory holding fetched artefacts.
#[derive(Debug, Clone)]
pub struct ModelCache {
    root: PathBuf,
}

impl Default for ModelCache {
    fn default() -> Self {
        Self::new(Self::default_root())
    }
}

/// Size and mtime of a file when it was last hashed, and the hash it had; while size and
/// mtime are unchanged, re-hashing (a second for the larger files) is skipped at run time.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

impl Stamp {
    fn of(path: &Path, sha256: &str) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        let mtime_ns = meta
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some(Stamp {
            size: meta.len(),
            mtime_ns,
            sha256: sha256.to_owned(),
        })
    }

    fn render(&self) -> String {
        format!(
            "size {}\nmtime_ns {}\nsha256 {}\n",
            self.size, self.mtime_ns, self.sha256
        )
    }

    fn parse(text: &str) -> Option<Stamp> {
        let (mut size, mut mtime_ns, mut sha256) = (None, None, None);
        for line in text.lines() {
            match line.split_once(' ')? {
                ("size", v) => size = v.parse().ok(),
                ("mtime_ns", v) => mtime_ns = v.parse().ok(),
                ("sha256", v) => sha256 = Some(v.to_owned()),
                _ => return None,
            }
        }
        Some(Stamp {
            size: size?,
            mtime_ns: mtime_ns?,
            sha256: sha256?,
        })
    }
}

impl ModelCache {
    /// A cache rooted at `root` (created on first fetch).
    pub fn new(root: PathBuf) -> Self {
        ModelCache { root }
    }

    /// `$AULLM_CACHE_DIR`, else `<user cache dir>/aullm/models` (`~/.cache/aullm/models` on Linux).
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::cache_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("aullm")
            .join("models")
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artefact is stored: `<root>/<name>/<file>`.
    pub fn path_of(&self, a: &Artefact) -> PathBuf {
        self.root.join(&a.name).join(&a.file)
    }

    fn stamp_path(&self, a: &Artefact) -> PathBuf {
        self.root
            .join(&a.name)
            .join(format!("{}{STAMP_SUFFIX}", a.file))
    }

    /// Hashes the cached file (if any) and compares it with the manifest.
    pub fn status(&self, a: &Artefact) -> ArtefactStatus {
        let path = self.path_of(a);
        if !path.exists() {
            return ArtefactStatus::Missing;
        }
        match sha256_file(&path) {
            Ok(actual) if actual == a.sha256 => ArtefactStatus::Ok,
            Ok(actual) => ArtefactStatus::Mismatch { actual },
            Err(e) => ArtefactStatus::Mismatch {
                actual: format!("unreadable: {e}"),
            },
        }
    }

    /// Hashes the cached file and returns its path if it matches; the error says how to fix it.
    pub fn verify(&self, a: &Artefact) -> Result<PathBuf> {
        let path = self.path_of(a);
        if !path.is_file() {
            bail!(
                "artefact `{}` is missing: {} does not exist; run `aullm models fetch {}`",
                a.name,
                path.display(),
                a.name
            );
        }
        let actual = sha256_file(&path).map_err(|e| {
            anyhow!(
                "artefact `{}`: cannot read {}: {e}; run `aullm models fetch {}`",
                a.name,
                path.display(),
                a.name
            )
        })?;
        if actual != a.sha256 {
            // A stale stamp must not vouch for this file later.
            let _ = fs::remove_file(self.stamp_path(a));
            bail!(
                "artefact `{}` at {} has the wrong sha256: expected {}, actual {}; \
                 the file is damaged or from another version: run `aullm models fetch {}`",
                a.name,
                path.display(),
                a.sha256,
                actual,
                a.name
            );
        }
        self.write_stamp(a, &path);
        Ok(path)
    }

    /// The artefact's path for run time: trusts the stamp while size and mtime are unchanged,
    /// otherwise hashes the file again (see `verify`).
    pub fn resolve(&self, a: &Artefact) -> Result<PathBuf> {
        let path = self.path_of(a);
        let stamp = fs::read_to_string(self.stamp_path(a))
            .ok()
            .and_then(|t| Stamp::parse(&t));
        if let Some(stamp) = stamp
            && Stamp::of(&path, &a.sha256).as_ref() == Some(&stamp)
        {
            return Ok(path);
        }
        self.verify(a)
    }

    /// Fetches the artefact through its registry client unless a verified copy is present
    /// (`force` fetches anyway); the file is stored only if its SHA-256 matches.
    pub fn fetch(&self, a: &Artefact, force: bool) -> Result<FetchOutcome> {
        if !force && self.status(a) == ArtefactStatus::Ok {
            let path = self.path_of(a);
            self.write_stamp(a, &path);
            return Ok(FetchOutcome::AlreadyPresent);
        }
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create cache directory {}", self.root.display()))?;
        let work = WorkDir::new_in(&self.root, &a.name).with_context(|| {
            format!(
                "cannot create a scratch directory in {}",
                self.root.display()
            )
        })?;
        let source = fetch::obtain(a, work.path())?;
        let staged = work.path().join("staged");
        let actual = fetch::extract(a, &source, &staged, work.path())?;
        if actual != a.sha256 {
            // `work` (with the staged file) is removed when it drops.
            bail!(
                "artefact `{}`: sha256 of `{}` from {} is {}, expected {}; not stored \
                 (wrong package version, or the manifest's hash is out of date)",
                a.name,
                if a.member.is_empty() {
                    &a.file
                } else {
                    &a.member
                },
                source.display(),
                actual,
                a.sha256
            );
        }
        let dir = self.root.join(&a.name);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let path = self.path_of(a);
        let _ = fs::remove_file(self.stamp_path(a));
        fs::rename(&staged, &path).with_context(|| {
            format!(
                "artefact `{}`: cannot move {} to {}",
                a.name,
                staged.display(),
                path.display()
            )
        })?;
        self.write_stamp(a, &path);
        tracing::info!(artefact = %a.name, "stored {}", path.display());
        Ok(FetchOutcome::Fetched(path))
    }

    /// Records that `path` hashed to the manifest's value; a failure only costs a re-hash later.
    fn write_stamp(&self, a: &Artefact, path: &Path) {
        let Some(stamp) = Stamp::of(path, &a.sha256) else {
            return;
        };
        let stamp_path = self.stamp_path(a);
        if let Err(e) = fs::write(&stamp_path, stamp.render()) {
            tracing::warn!("cannot write {}: {e}", stamp_path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::manifest::SourceKind;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    const CONTENT: &[u8] = b"not really a model, but bytes all the same\n";

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn file_artefact(name: &str, package: &Path, member: &str, sha256: &str) -> Artefact {
        Artefact {
            name: name.into(),
            kind: SourceKind::File,
            package: package.to_string_lossy().into_owned(),
            member: member.into(),
            file: "thing.bin".into(),
            sha256: sha256.into(),
            required: false,
            description: "test".into(),
            license: "none".into(),
            pip_args: Vec::new(),
        }
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(files_under(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    #[test]
    fn file_fetch_then_present_then_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.bin");
        fs::write(&src, CONTENT).unwrap();
        let cache = ModelCache::new(tmp.path().join("cache"));
        let a = file_artefact("thing", &src, "", &sha(CONTENT));

        assert_eq!(cache.status(&a), ArtefactStatus::Missing);
        let msg = cache.resolve(&a).unwrap_err().to_string();
        assert!(msg.contains("aullm models fetch thing"), "{msg}");

        let path = cache.path_of(&a);
        assert_eq!(
            cache.fetch(&a, false).unwrap(),
            FetchOutcome::Fetched(path.clone())
        );
        assert_eq!(fs::read(&path).unwrap(), CONTENT);
        assert_eq!(cache.status(&a), ArtefactStatus::Ok);
        assert_eq!(
            cache.fetch(&a, false).unwrap(),
            FetchOutcome::AlreadyPresent
        );
        assert!(matches!(
            cache.fetch(&a, true).unwrap(),
            FetchOutcome::Fetched(_)
        ));

        let stamp = fs::read_to_string(cache.stamp_path(&a)).unwrap();
        assert!(stamp.contains(&a.sha256), "{stamp}");
        assert_eq!(cache.resolve(&a).unwrap(), path);
        assert_eq!(cache.verify(&a).unwrap(), path);
        // Only the file and its stamp remain: the scratch directory is gone.
        assert_eq!(files_under(cache.root()).len(), 2);
    }

    #[test]
    fn wrong_hash_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.bin");
        fs::write(&src, CONTENT).unwrap();
        let cache = ModelCache::new(tmp.path().join("cache"));
        let a = file_artefact("thing", &src, "", &"0".repeat(64));

        let msg = cache.fetch(&a, false).unwrap_err().to_string();
        assert!(msg.contains("`thing`") && msg.contains("sha256"), "{msg}");
        assert!(
            msg.contains(&sha(CONTENT)) && msg.contains(&"0".repeat(64)),
            "{msg}"
        );
        assert_eq!(files_under(cache.root()), Vec::<PathBuf>::new());
    }

    #[test]
    fn tampering_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.bin");
        fs::write(&src, CONTENT).unwrap();
        let cache = ModelCache::new(tmp.path().join("cache"));
        let a = file_artefact("thing", &src, "", &sha(CONTENT));
        cache.fetch(&a, false).unwrap();
        cache.resolve(&a).unwrap();

        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(cache.path_of(&a))
            .unwrap();
        f.write_all(b"tampered").unwrap();
        drop(f);

        for msg in [
            cache.resolve(&a).unwrap_err().to_string(),
            cache.verify(&a).unwrap_err().to_string(),
        ] {
            assert!(msg.contains("`thing`") && msg.contains("sha256"), "{msg}");
            assert!(msg.contains("aullm models fetch thing"), "{msg}");
        }
        assert!(matches!(cache.status(&a), ArtefactStatus::Mismatch { .. }));
        // Fetching again (no --force needed) repairs it.
        assert!(matches!(
            cache.fetch(&a, false).unwrap(),
            FetchOutcome::Fetched(_)
        ));
        cache.resolve(&a).unwrap();
    }

    #[test]
    fn zip_member_is_extracted() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("pkg/other.txt", opts).unwrap();
        zip.write_all(b"other").unwrap();
        zip.start_file("pkg/data/thing.bin", opts).unwrap();
        zip.write_all(CONTENT).unwrap();
        zip.finish().unwrap();

        let cache = ModelCache::new(tmp.path().join("cache"));
        let a = file_artefact("thing", &archive, "pkg/data/thing.bin", &sha(CONTENT));
        cache.fetch(&a, false).unwrap();
        assert_eq!(fs::read(cache.resolve(&a).unwrap()).unwrap(), CONTENT);

        let b = file_artefact("other", &archive, "pkg/thing.bin", &sha(CONTENT));
        let msg = cache.fetch(&b, false).unwrap_err().to_string();
        assert!(
            msg.contains("`other`") && msg.contains("pkg/thing.bin"),
            "{msg}"
        );
        assert!(msg.contains(&archive.display().to_string()), "{msg}");
        assert!(
            msg.contains("pkg/data/thing.bin"),
            "near miss listed: {msg}"
        );
    }

    #[test]
    fn tar_gz_member_is_extracted() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("pkg-1.2.0.tgz");
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&archive).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        for (path, data) in [
            ("package/README", &b"readme"[..]),
            ("./package/ONNX/m.onnx", CONTENT),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();

        let cache = ModelCache::new(tmp.path().join("cache"));
        let a = file_artefact("thing", &archive, "package/ONNX/m.onnx", &sha(CONTENT));
        assert!(matches!(
            cache.fetch(&a, false).unwrap(),
            FetchOutcome::Fetched(_)
        ));
        assert_eq!(fs::read(cache.path_of(&a)).unwrap(), CONTENT);

        let b = file_artefact("other", &archive, "package/missing.onnx", &sha(CONTENT));
        let msg = cache.fetch(&b, false).unwrap_err().to_string();
        assert!(
            msg.contains("`other`") && msg.contains("package/missing.onnx"),
            "{msg}"
        );
    }

    #[test]
    fn stamp_round_trip() {
        let s = Stamp {
            size: 12,
            mtime_ns: 1_700_000_000_123_456_789,
            sha256: "ab".repeat(32),
        };
        assert_eq!(Stamp::parse(&s.render()), Some(s));
        assert_eq!(Stamp::parse("size x\n"), None);
    }

    #[test]
    fn default_root_ends_in_aullm_models_or_env() {
        // Only reads the environment: setting it would race with other tests.
        let root = ModelCache::default_root();
        match std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => assert_eq!(root, PathBuf::from(dir)),
            None => assert!(root.ends_with("aullm/models"), "{}", root.display()),
        }
    }
}
