//! What the user names as a video source, resolved to one GStreamer description.

use super::template;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A video source as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A local video file.
    File(PathBuf),
    /// A URI (`file://`, `rtsp://`, `http://`, ...).
    Uri(String),
    /// A named template with parameters: `pipeline:NAME?key=value&key=value`.
    Template {
        /// Template name, e.g. `v4l2`.
        name: String,
        /// Parameters overriding the template's defaults.
        params: BTreeMap<String, String>,
    },
    /// A raw GStreamer description producing raw video: `gst:videotestsrc ! ...`.
    Raw(String),
}

/// Stands for a file's path in its launch description until the element is built.
pub const FILE_LOCATION: &str = "aullm-file-location";

impl Source {
    /// Parses the command-line form. Files must exist.
    pub fn parse(spec: &str) -> Result<Source> {
        if let Some(desc) = spec.strip_prefix("gst:") {
            if desc.trim().is_empty() {
                bail!("source {spec:?}: empty GStreamer description after gst:");
            }
            return Ok(Source::Raw(desc.trim().to_string()));
        }
        if let Some(rest) = spec.strip_prefix("pipeline:") {
            let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut params = BTreeMap::new();
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("source {spec:?}: parameter {kv:?} is not KEY=VALUE");
                };
                params.insert(k.to_string(), v.to_string());
            }
            return Ok(Source::Template {
                name: name.to_string(),
                params,
            });
        }
        if spec.contains("://") {
            return Ok(Source::Uri(spec.to_string()));
        }
        let p = Path::new(spec);
        if !p.exists() {
            bail!(
                "source {spec:?}: no such file (use pipeline:NAME?k=v for a template, gst:DESCRIPTION for a raw pipeline, or a URI)"
            );
        }
        if p.is_dir() {
            bail!("source {spec:?} is a folder, not a video file");
        }
        Ok(Source::File(p.to_path_buf()))
    }

    /// A short label for logs and outputs.
    pub fn label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Uri(u) => u.clone(),
            Source::Template { name, params } => {
                let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("pipeline:{name}?{}", q.join("&"))
            }
            Source::Raw(d) => format!("gst:{d}"),
        }
    }

    /// True when the source is a file whose every frame must be kept (never dropped).
    pub fn is_file(&self) -> bool {
        matches!(self, Source::File(_))
            || matches!(self, Source::Uri(u) if u.starts_with("file://"))
    }

    /// The local file behind this source, when there is one.
    pub fn local_file(&self) -> Option<PathBuf> {
        match self {
            Source::File(p) => Some(p.clone()),
            Source::Uri(u) => u.strip_prefix("file://").map(PathBuf::from),
            _ => None,
        }
    }

    /// The file a [`Source::File`] reads, absolute (what `Ingest::open` puts in place of
    /// [`FILE_LOCATION`]).
    pub fn file_location(&self) -> Option<PathBuf> {
        match self {
            Source::File(p) => Some(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
            _ => None,
        }
    }

    /// The GStreamer description up to (not including) the conversion to gray and the sink.
    pub fn description(&self, templates_dir: Option<&Path>) -> Result<String> {
        match self {
            Source::File(_) => {
                // The path is set on the element after parsing (`Ingest::open`): a file name may
                // hold any character, and none of them must reach the launch syntax.
                let mut params = BTreeMap::new();
                params.insert("location".to_string(), FILE_LOCATION.to_string());
                template::find("file", templates_dir)?.render(&params)
            }
            Source::Uri(u) => {
                let mut params = BTreeMap::new();
                params.insert("uri".to_string(), u.clone());
                template::find("uri", templates_dir)?.render(&params)
            }
            Source::Template { name, params } => {
                template::find(name, templates_dir)?.render(params)
            }
            Source::Raw(d) => Ok(d.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            Source::parse("gst:videotestsrc").unwrap(),
            Source::Raw("videotestsrc".into())
        );
        match Source::parse("pipeline:test?fps=100&frames=5").unwrap() {
            Source::Template { name, params } => {
                assert_eq!(name, "test");
                assert_eq!(params["fps"], "100");
                assert_eq!(params["frames"], "5");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Source::parse("rtsp://cam/1").unwrap(),
            Source::Uri(_)
        ));
        let e = Source::parse("/no/such/video.avi").unwrap_err().to_string();
        assert!(e.contains("/no/such/video.avi"));
        assert!(Source::parse("pipeline:test?fps").is_err());
    }
}
