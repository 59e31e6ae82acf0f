//! The module layout DESIGN.md asks for, checked on the source: dependencies between top-level
//! modules point one way (no cycle), and the live path imports nothing from training code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name of a file under src/ (`src/face/track.rs` → `face`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "main" && name != "lib").then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Identifiers that follow `crate::`, and those inside `use crate::{a, b::c}` groups.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a group: the first identifier of each comma-separated item at
            // nesting depth 0.
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// Top-level module → the top-level modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = top_module(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        for r in crate_refs(&text) {
            if r != m && modules.contains(&r) {
                deps.insert(r);
            }
        }
    }
    g
}

/// Modules reachable from `from`.
fn reachable(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_parser_sees_groups_and_paths() {
    let r = crate_refs("use crate::{face::{A, B}, ingest, spot::x};\nlet y = crate::graph::f();");
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        ["face", "graph", "ingest", "spot"]
    );
}

#[test]
fn top_level_modules_import_each_other_in_one_direction_only() {
    let g = module_graph();
    assert!(g.len() > 15, "found only {} modules", g.len());
    let mut cycles = Vec::new();
    for m in g.keys() {
        if reachable(&g, m).contains(m) {
            let back: Vec<&String> = g[m]
                .iter()
                .filter(|d| reachable(&g, d).contains(m))
                .collect();
            cycles.push(format!("{m} -> {back:?} -> ... -> {m}"));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_live_path_imports_no_training_code() {
    let g = module_graph();
    for live in [
        "stream", "runtime", "ingest", "face", "spot", "events", "clip",
    ] {
        let r = reachable(&g, live);
        assert!(
            !r.contains("train") && !r.contains("jobs"),
            "{live} reaches {r:?}"
        );
    }
    // Each stage module stays below the configuration that composes it.
    for stage in ["ingest", "face", "spot", "graph", "events", "models"] {
        assert!(
            !reachable(&g, stage).contains("config"),
            "{stage} imports config"
        );
    }
}
