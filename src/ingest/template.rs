//! Named GStreamer source templates (pipelines/*.pipeline) with declared, defaulted parameters.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Templates compiled into the binary, so `aullm` works outside the source tree.
const BUILTIN: &[(&str, &str)] = &[
    ("file", include_str!("../../pipelines/file.pipeline")),
    ("uri", include_str!("../../pipelines/uri.pipeline")),
    ("v4l2", include_str!("../../pipelines/v4l2.pipeline")),
    ("aravis", include_str!("../../pipelines/aravis.pipeline")),
    ("pylon", include_str!("../../pipelines/pylon.pipeline")),
    ("rtsp", include_str!("../../pipelines/rtsp.pipeline")),
    ("test", include_str!("../../pipelines/test.pipeline")),
    (
        "face-test",
        include_str!("../../pipelines/face-test.pipeline"),
    ),
];

/// A parsed template: description text with `{param}` holes and the declared parameters.
#[derive(Debug, Clone)]
pub struct Template {
    /// Template name (file stem).
    pub name: String,
    /// First comment line: what the source is.
    pub summary: String,
    /// Declared parameters and their defaults (empty string = required).
    pub params: BTreeMap<String, String>,
    /// The GStreamer description with `{param}` placeholders.
    pub body: String,
}

impl Template {
    /// Parses template text; `# param NAME=DEFAULT` lines declare parameters.
    pub fn parse(name: &str, text: &str) -> Result<Template> {
        let mut params = BTreeMap::new();
        let mut summary = String::new();
        let mut body = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix('#') {
                let rest = rest.trim();
                if let Some(decl) = rest.strip_prefix("param ") {
                    let (k, v) = decl.split_once('=').with_context(|| {
                        format!("pipeline template {name}: bad declaration {t:?} (want `# param NAME=DEFAULT`)")
                    })?;
                    params.insert(k.trim().to_string(), v.trim().to_string());
                } else if summary.is_empty() {
                    summary = rest.to_string();
                }
            } else if !t.is_empty() {
                body.push(t.to_string());
            }
        }
        if body.is_empty() {
            bail!("pipeline template {name} has no pipeline description");
        }
        Ok(Template {
            name: name.to_string(),
            summary,
            params,
            body: body.join(" "),
        })
    }

    /// Fills the placeholders; unknown or missing parameters and unsafe values are errors naming them.
    pub fn render(&self, given: &BTreeMap<String, String>) -> Result<String> {
        for k in given.keys() {
            if !self.params.contains_key(k) {
                let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
                bail!(
                    "pipeline template {}: unknown parameter {k:?} (known: {})",
                    self.name,
                    known.join(", ")
                );
            }
        }
        let mut out = self.body.clone();
        for (k, default) in &self.params {
            let v = given.get(k).unwrap_or(default);
            if v.is_empty() && !self.optional_empty(k) {
                bail!(
                    "pipeline template {}: parameter {k:?} is required",
                    self.name
                );
            }
            // Values land inside a launch description: keep them from adding elements or quotes.
            if v.contains(['!', '"', '\n']) {
                bail!(
                    "pipeline template {}: parameter {k}={v:?} may not contain '!', '\"' or newlines",
                    self.name
                );
            }
            out = out.replace(&format!("{{{k}}}"), v);
        }
        Ok(out)
    }

    /// Camera selectors may stay empty ("first camera found").
    fn optional_empty(&self, k: &str) -> bool {
        matches!(k, "camera" | "serial")
    }
}

/// Looks a template up: first `dir/NAME.pipeline` (when a folder is configured), then the built-ins.
pub fn find(name: &str, dir: Option<&Path>) -> Result<Template> {
    if let Some(dir) = dir {
        let p = dir.join(format!("{name}.pipeline"));
        if p.exists() {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read pipeline template {}", p.display()))?;
            return Template::parse(name, &text);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Template::parse(n, text),
        None => {
            let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no pipeline template named {name:?} (built-in: {})",
                known.join(", ")
            )
        }
    }
}

/// All built-in templates, parsed.
pub fn builtin() -> Vec<Template> {
    BUILTIN
        .iter()
        .filter_map(|(n, t)| Template::parse(n, t).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_builtins_parse_and_render_with_defaults() {
        for t in builtin() {
            let mut given = BTreeMap::new();
            for (k, v) in &t.params {
                if v.is_empty() && !t.optional_empty(k) {
                    given.insert(k.clone(), "x".to_string());
                }
            }
            let desc = t.render(&given).unwrap();
            assert!(!desc.contains('{'), "{}: {desc}", t.name);
        }
        assert_eq!(builtin().len(), BUILTIN.len());
    }

    #[test]
    fn render_checks_parameters() {
        let t = find("test", None).unwrap();
        let mut given = BTreeMap::new();
        given.insert("fps".to_string(), "100".to_string());
        assert!(t.render(&given).unwrap().contains("framerate=100/1"));
        given.insert("fsp".to_string(), "1".to_string());
        let e = t.render(&given).unwrap_err().to_string();
        assert!(e.contains("fsp"), "{e}");
        let f = find("file", None).unwrap();
        assert!(f.render(&BTreeMap::new()).is_err(), "location is required");
        let mut evil = BTreeMap::new();
        evil.insert("location".to_string(), "a ! fakesink".to_string());
        assert!(f.render(&evil).is_err());
        assert!(find("nope", None).is_err());
    }
}
