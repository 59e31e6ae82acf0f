//! Which videos a batch processes: files, folders (recursive, glob-filtered) and list files, in a
//! deterministic order, and the shard `--shard I/N` keeps.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

/// Extensions taken from folders when no `--glob` is given.
pub const VIDEO_EXTENSIONS: [&str; 9] = [
    "avi", "mkv", "mp4", "mov", "webm", "mpg", "mpeg", "m4v", "wmv",
];

/// One video to process and the folder name its outputs go to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Input {
    /// Output folder name: the path relative to the input it came from, '/' → "__", no extension.
    pub id: String,
    /// The file.
    pub path: PathBuf,
}

/// Matches `name` against a shell glob with `*` and `?` (no path separators involved).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a file name is taken from a folder.
fn wanted(name: &str, glob: Option<&str>) -> bool {
    match glob {
        Some(g) => glob_match(g, name),
        None => Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())),
    }
}

/// Names at the top of an output folder that a video's folder must not take.
const RESERVED_IDS: [&str; 2] = ["index.csv", "index.html"];

/// The output id of `path` relative to `base`: one folder name inside `--out`, never `.`, `..`, a
/// hidden name or an index file's name (a video called `...avi` used to write into the parent).
fn id_of(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let stem = rel.with_extension("");
    let id = stem
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .filter(|c| c != "/" && !c.is_empty())
        .map(|c| {
            if c.starts_with('.') {
                format!("_{c}")
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join("__");
    if id.is_empty() || RESERVED_IDS.iter().any(|r| id.eq_ignore_ascii_case(r)) {
        format!("{id}_video")
    } else {
        id
    }
}

/// Expands the command-line inputs: a folder is searched recursively, a `.txt`/`.lst` file lists
/// one path per line (`#` comments), anything else is a video. Sorted by id; ids must be unique.
pub fn collect(args: &[PathBuf], glob: Option<&str>) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    // Folders by their real path: a symbolic-link loop, or two links to one folder, is listed once.
    let mut listed = std::collections::HashSet::new();
    for a in args {
        if a.is_dir() {
            let mut stack = vec![a.clone()];
            while let Some(d) = stack.pop() {
                if !listed.insert(std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone())) {
                    continue;
                }
                let rd = std::fs::read_dir(&d)
                    .with_context(|| format!("cannot list {}", d.display()))?;
                for e in rd {
                    let p = e?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if wanted(&p.file_name().unwrap_or_default().to_string_lossy(), glob) {
                        out.push(Input {
                            id: id_of(&p, a),
                            path: p,
                        });
                    }
                }
            }
        } else if matches!(a.extension().and_then(|e| e.to_str()), Some("txt" | "lst")) {
            let text = std::fs::read_to_string(a)
                .with_context(|| format!("cannot read list {}", a.display()))?;
            let base = a.parent().unwrap_or(Path::new("."));
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let p = if Path::new(l).is_absolute() {
                    PathBuf::from(l)
                } else {
                    base.join(l)
                };
                ensure!(
                    p.is_file(),
                    "{} line {}: no such file {}",
                    a.display(),
                    i + 1,
                    p.display()
                );
                out.push(Input {
                    id: id_of(&p, base),
                    path: p,
                });
            }
        } else if a.is_file() {
            out.push(Input {
                id: id_of(a, a.parent().unwrap_or(Path::new(""))),
                path: a.clone(),
            });
        } else {
            bail!("input {}: no such file or folder", a.display());
        }
    }
    out.sort();
    // One video reached by several paths (links) is processed once, under its first id.
    let mut real = std::collections::HashSet::new();
    out.retain(|i| real.insert(std::fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone())));
    for w in out.windows(2) {
        ensure!(
            w[0].id != w[1].id,
            "{} and {} would write to the same output folder {:?}: pass them separately or rename one",
            w[0].path.display(),
            w[1].path.display(),
            w[0].id
        );
    }
    Ok(out)
}

/// Parses `I/N` (1-based).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s:?}: expected I/N, e.g. 2/8"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: I is not a number"))?,
        n.trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: N is not a number"))?,
    );
    ensure!(
        n >= 1 && (1..=n).contains(&i),
        "--shard {s:?}: expected 1 <= I <= N"
    );
    Ok((i, n))
}

/// The inputs shard `i` of `n` processes: every n-th of the sorted list, starting at i − 1.
pub fn shard(inputs: Vec<Input>, i: usize, n: usize) -> Vec<Input> {
    inputs
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % n == i - 1)
        .map(|(_, x)| x)
        .collect()
}

/// Puts the largest files first (a stable sort: equal sizes keep their order). Workers take
/// inputs in turn, so a long interview taken last would run alone while the other workers sit
/// idle; started first it overlaps the short ones. Unreadable files count as empty (their own
/// error comes when they are opened).
pub fn longest_first(inputs: &mut [Input]) {
    inputs.sort_by_cached_key(|i| {
        std::cmp::Reverse(std::fs::metadata(&i.path).map_or(0, |m| m.len()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn larger_files_go_first_and_equal_ones_keep_their_order() {
        let d = tempfile::tempdir().unwrap();
        let mut inputs: Vec<Input> = [("a", 10), ("b", 300), ("c", 10), ("d", 0), ("e", 40)]
            .iter()
            .map(|(n, len)| {
                let path = d.path().join(format!("{n}.avi"));
                std::fs::write(&path, vec![0u8; *len]).unwrap();
                Input {
                    id: n.to_string(),
                    path,
                }
            })
            .collect();
        inputs.push(Input {
            id: "missing".into(),
            path: d.path().join("missing.avi"),
        });
        longest_first(&mut inputs);
        let ids: Vec<&str> = inputs.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["b", "e", "a", "c", "d", "missing"]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.avi", "a.avi"));
        assert!(!glob_match("*.avi", "a.mkv"));
        assert!(glob_match("inter?iew_*.mp4", "interview_03.mp4"));
        assert!(glob_match("*", "x"));
    }

    #[test]
    fn shards_partition_the_inputs() {
        let inputs: Vec<Input> = (0..10)
            .map(|k| Input {
                id: format!("v{k:02}"),
                path: PathBuf::from(format!("v{k:02}.avi")),
            })
            .collect();
        let mut all: Vec<Input> = (1..=3).flat_map(|i| shard(inputs.clone(), i, 3)).collect();
        all.sort();
        assert_eq!(all, inputs);
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("4/3").is_err());
        assert!(parse_shard("x").is_err());
    }

    #[test]
    fn symbolic_link_loops_and_aliases_are_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("in");
        std::fs::create_dir_all(d.join("day1")).unwrap();
        std::fs::write(d.join("day1/a.avi"), "x").unwrap();
        std::os::unix::fs::symlink(&d, d.join("day1/loop")).unwrap();
        std::os::unix::fs::symlink(d.join("day1/a.avi"), d.join("alias.avi")).unwrap();
        let got = collect(std::slice::from_ref(&d), None).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn every_id_is_one_plain_folder_inside_the_output() {
        let base = Path::new("/data");
        for (file, id) in [
            ("...avi", "_.."),
            ("..avi", "_.."),
            (".hidden.avi", "_.hidden"),
            ("index.csv.avi", "index.csv_video"),
            ("INDEX.HTML.mp4", "INDEX.HTML_video"),
            ("a/../b.avi", "a___..__b"),
            ("x.avi", "x"),
        ] {
            let got = id_of(&base.join(file), base);
            assert_eq!(got, id, "{file}");
            let joined = Path::new("/out").join(&got);
            assert_eq!(joined.parent(), Some(Path::new("/out")), "{file}: {got}");
        }
    }

    #[test]
    fn folders_lists_and_ids() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        for f in ["a/b/x.avi", "a/y.mp4", "a/notes.txt"] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let got = collect(&[d.path().join("a")], None).unwrap();
        let ids: Vec<&str> = got.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["b__x", "y"]);
        let list = d.path().join("list.txt");
        std::fs::write(&list, "# videos\na/y.mp4\n\na/b/x.avi\n").unwrap();
        assert_eq!(collect(std::slice::from_ref(&list), None).unwrap().len(), 2);
        std::fs::write(&list, "a/missing.avi\n").unwrap();
        let e = collect(&[list], None).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
