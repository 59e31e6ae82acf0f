//! `aullm doctor`: one table of what is present and working, with the command that fixes what is not.

use crate::config::Config;
use crate::models::ArtefactStatus;
use gstreamer as gst;

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub component: String,
    /// Ok, missing-but-optional, or failed.
    pub state: State,
    /// Version or what was found.
    pub detail: String,
    /// The command that fixes it (empty when fine).
    pub fix: String,
}

/// Outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Present and working.
    Ok,
    /// Not present, and only needed for some sources or outputs.
    Optional,
    /// Required and missing or broken.
    Failed,
}

fn row(component: &str, state: State, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        component: component.to_string(),
        state,
        detail: detail.into(),
        fix: fix.to_string(),
    }
}

/// GStreamer elements aullm uses: (name, required, what for, package).
const ELEMENTS: &[(&str, bool, &str, &str)] = &[
    (
        "decodebin",
        true,
        "file decoding",
        "gstreamer1.0-plugins-base",
    ),
    (
        "uridecodebin",
        true,
        "URI sources",
        "gstreamer1.0-plugins-base",
    ),
    (
        "videoconvert",
        true,
        "conversion to gray",
        "gstreamer1.0-plugins-base",
    ),
    (
        "appsink",
        true,
        "frames into aullm",
        "gstreamer1.0-plugins-base",
    ),
    ("appsrc", true, "video outputs", "gstreamer1.0-plugins-base"),
    (
        "videotestsrc",
        true,
        "test source",
        "gstreamer1.0-plugins-base",
    ),
    ("avidemux", true, "AVI files", "gstreamer1.0-plugins-good"),
    (
        "matroskamux",
        true,
        "lossless .mkv outputs",
        "gstreamer1.0-plugins-good",
    ),
    (
        "avenc_ffv1",
        true,
        "lossless .mkv outputs",
        "gstreamer1.0-libav",
    ),
    ("avdec_h264", false, "H.264 files", "gstreamer1.0-libav"),
    (
        "v4l2src",
        false,
        "V4L2 cameras",
        "gstreamer1.0-plugins-good",
    ),
    (
        "rtspsrc",
        false,
        "RTSP streams",
        "gstreamer1.0-plugins-good",
    ),
    (
        "aravissrc",
        false,
        "GigE/USB3 Vision cameras",
        "aravis built with -Dgst-plugin=enabled (Debian ships none)",
    ),
    (
        "pylonsrc",
        false,
        "Basler cameras",
        "gst-plugin-pylon (Basler pylon SDK)",
    ),
];

/// Runs every check.
pub fn run(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let apt = "sudo apt-get install -y";
    match gst::init() {
        Ok(()) => {
            out.push(row(
                "GStreamer",
                State::Ok,
                gst::version_string().to_string(),
                "",
            ));
            for (name, required, what, pkg) in ELEMENTS {
                let found = gst::ElementFactory::find(name).is_some();
                let state = match (found, required) {
                    (true, _) => State::Ok,
                    (false, true) => State::Failed,
                    (false, false) => State::Optional,
                };
                let detail = if found {
                    what.to_string()
                } else {
                    format!("not installed ({what})")
                };
                let fix = match (found, pkg.starts_with("gstreamer1.0")) {
                    (true, _) => String::new(),
                    (false, true) => format!("{apt} {pkg}"),
                    (false, false) => format!("install {pkg}"),
                };
                out.push(row(&format!("  element {name}"), state, detail, &fix));
            }
        }
        Err(e) => out.push(row("GStreamer", State::Failed, e.to_string(), "make setup")),
    }
    match opencv::core::get_version_string() {
        Ok(v) => out.push(row("OpenCV", State::Ok, v, "")),
        Err(e) => out.push(row("OpenCV", State::Failed, e.to_string(), "make setup")),
    }

    let manifest = crate::assets::manifest(&cfg.models);
    let cache = crate::assets::cache(&cfg.models);
    match crate::assets::init_onnx(&cfg.models) {
        Ok(()) => out.push(row(
            "ONNX Runtime",
            State::Ok,
            format!(
                "{} (front-end EP: {}; face detector: {}) from {}",
                crate::onnx::version().unwrap_or("?"),
                if crate::onnx::cuda_available() {
                    crate::onnx::CUDA_EP
                } else {
                    "CPUExecutionProvider, no CUDA EP in this build"
                },
                crate::onnx::execution_provider(),
                crate::onnx::library()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            "",
        )),
        Err(e) => out.push(row(
            "ONNX Runtime",
            State::Failed,
            format!("{e:#}"),
            "aullm models fetch onnxruntime",
        )),
    }
    match &manifest {
        Ok(m) => {
            out.push(row(
                "model cache",
                State::Ok,
                cache.root().display().to_string(),
                "",
            ));
            for a in &m.artefacts {
                let (state, detail) = match cache.status(a) {
                    ArtefactStatus::Ok => {
                        (State::Ok, format!("verified sha256 {}…", &a.sha256[..12]))
                    }
                    ArtefactStatus::Missing => (
                        if a.required {
                            State::Failed
                        } else {
                            State::Optional
                        },
                        "not fetched".to_string(),
                    ),
                    ArtefactStatus::Mismatch { actual } => (
                        State::Failed,
                        format!(
                            "sha256 mismatch (have {}…)",
                            &actual[..12.min(actual.len())]
                        ),
                    ),
                };
                let fix = if state == State::Ok {
                    String::new()
                } else {
                    format!("aullm models fetch {}", a.name)
                };
                out.push(row(&format!("  artefact {}", a.name), state, detail, &fix));
            }
        }
        Err(e) => out.push(row(
            "manifest",
            State::Failed,
            format!("{e:#}"),
            "check models.manifest",
        )),
    }
    for d in crate::graph::devices::probe() {
        let state = if d.ok { State::Ok } else { State::Optional };
        let fix = if d.ok || d.name == "cpu" {
            ""
        } else if candle_core::utils::cuda_is_available() {
            "a CUDA build without a usable GPU: check the driver (nvidia-smi)"
        } else {
            "cargo build --release --features cuda"
        };
        out.push(row(
            &format!("candle {}", d.name),
            if d.name == "cpu" && !d.ok {
                State::Failed
            } else {
                state
            },
            d.detail,
            fix,
        ));
    }
    // What `aullm run`/`batch` would run the front-end on with this configuration.
    let (engine, why) = crate::runtime::engine::choose(cfg, crate::onnx::cuda_available());
    out.push(row(
        "front-end engine",
        State::Ok,
        format!("{} ({why})", engine.describe()),
        "",
    ));
    match crate::assets::artefact_path(&cfg.models, "liblsl")
        .and_then(|p| lsl_version(&p).map(|v| (p, v)))
    {
        Ok((p, v)) => out.push(row(
            "liblsl",
            State::Ok,
            format!("{}.{} from {}", v / 100, v % 100, p.display()),
            "",
        )),
        Err(e) => out.push(row(
            "liblsl",
            State::Optional,
            format!("{e:#}"),
            "aullm models fetch liblsl",
        )),
    }
    out
}

/// `lsl_library_version()` from a liblsl file (e.g. 116 for 1.16).
pub fn lsl_version(lib: &std::path::Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    // SAFETY: liblsl has no load-time side effects beyond its own static initialisation.
    let l = unsafe { libloading::Library::new(lib) }
        .with_context(|| format!("cannot load liblsl from {}", lib.display()))?;
    // SAFETY: lsl_library_version is `int32_t lsl_library_version(void)` in lsl_c.h.
    let v = unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn() -> i32> = l
            .get(b"lsl_library_version")
            .with_context(|| format!("{} does not export lsl_library_version", lib.display()))?;
        f()
    };
    Ok(v)
}

/// Renders the table; returns it and whether everything required is fine.
pub fn render(checks: &[Check]) -> (String, bool) {
    let w = checks.iter().map(|c| c.component.len()).max().unwrap_or(10);
    let mut s = String::new();
    let mut ok = true;
    for c in checks {
        let mark = match c.state {
            State::Ok => "ok  ",
            State::Optional => "--  ",
            State::Failed => {
                ok = false;
                "FAIL"
            }
        };
        s.push_str(&format!("{mark} {:<w$}  {}", c.component, c.detail));
        if !c.fix.is_empty() {
            s.push_str(&format!("   [fix: {}]", c.fix));
        }
        s.push('\n');
    }
    s.push_str(if ok {
        "\nall required parts are present and working\n"
    } else {
        "\nrequired parts are missing: run the fix commands above (or `make setup`)\n"
    });
    (s, ok)
}
