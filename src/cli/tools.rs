//! `aullm synth`, `testvideo`, `faces`, `models` and `config`.

use anyhow::{Result, bail};
use aullm::config::Config;
use aullm::jobs::faces::{CropsOutput, FacesOptions};
use aullm::models::{FetchOutcome, ModelCache};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct SynthArgs {
    /// Output folder.
    pub(crate) out: PathBuf,
    /// ci (tiny, seconds), bench (24 subjects x 10 clips + 8 long videos, one photo, one kernel),
    /// general (the shipped model's training data: 36 subjects from the training photos, blob and
    /// muscle families, drawn capture conditions) or heldout (the evaluation set: held-out photos,
    /// the mesh family; training refuses it).
    #[arg(long, default_value = "ci", value_parser = ["ci", "bench", "general", "heldout"])]
    pub(crate) preset: String,
    /// Where identities come from: astronaut (one photo reshaped per subject), photos (the
    /// manifest's identity photos that training may use; subject i from face i modulo their
    /// number), photos:heldout (only the held-out photos; evaluation-only) or photos:all.
    /// Default: photos for general, photos:heldout for heldout, astronaut otherwise.
    /// `aullm models fetch --all` fetches the photos.
    #[arg(long, value_parser = ["astronaut", "photos", "photos:heldout", "photos:all"])]
    pub(crate) faces: Option<String>,
    /// Displacement families, comma-separated (blobs, muscles, mesh); each expression is rendered
    /// by one of them. Any set with mesh, the held-out family, is evaluation-only.
    #[arg(long, value_delimiter = ',')]
    pub(crate) family: Option<Vec<String>>,
    /// Master seed (same seed, same bytes).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Number of subjects (identities).
    #[arg(long)]
    pub(crate) subjects: Option<u32>,
    /// Clips per subject.
    #[arg(long)]
    pub(crate) clips: Option<u32>,
    /// Number of long videos.
    #[arg(long)]
    pub(crate) long_videos: Option<u32>,
    /// Micro-expression amplitude range in canonical-face pixels, e.g. 0.3,2.0.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    pub(crate) amplitude: Option<Vec<f32>>,
    /// Sensor noise (gray levels).
    #[arg(long)]
    pub(crate) noise: Option<f32>,
    /// Illumination flicker (relative amplitude).
    #[arg(long)]
    pub(crate) flicker: Option<f32>,
    /// Head micro-motion, peak pixels.
    #[arg(long)]
    pub(crate) head_px: Option<f32>,
    /// Head micro-rotation, peak degrees.
    #[arg(long)]
    pub(crate) head_deg: Option<f32>,
    /// Blinks per minute in long videos (0 disables).
    #[arg(long)]
    pub(crate) blinks: Option<f64>,
    /// Macro-expression distractors per long video.
    #[arg(long)]
    pub(crate) macros: Option<u32>,
    /// Micro-expressions per long video.
    #[arg(long)]
    pub(crate) micros: Option<u32>,
    /// Rendering threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

#[derive(clap::Args)]
pub(crate) struct TestvideoArgs {
    /// Output file (.mkv).
    pub(crate) out: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 400)]
    pub(crate) frames: u32,
    /// Frame rate.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) fps: f64,
    /// Frame width.
    #[arg(long, default_value_t = 640)]
    pub(crate) width: u32,
    /// Frame height.
    #[arg(long, default_value_t = 480)]
    pub(crate) height: u32,
    /// Sensor noise (standard deviation, gray levels).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) noise: f64,
    /// Head motion: still or sway (±6 px, ±2°, plus a 10 px drift).
    #[arg(long, default_value = "sway")]
    pub(crate) motion: String,
    /// ffv1 (lossless, compact) or raw (uncompressed GRAY8, cheapest to decode).
    #[arg(long, default_value = "ffv1")]
    pub(crate) codec: String,
    /// Noise seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Subcommand)]
pub(crate) enum ModelsAction {
    /// Every artefact in the manifest with its state.
    List,
    /// Fetch artefacts (all required ones by default) from their registries and verify them.
    Fetch {
        /// Names to fetch; none = every required artefact (`--all` for every one).
        names: Vec<String>,
        /// Fetch optional artefacts too.
        #[arg(long)]
        all: bool,
        /// Fetch again even when a verified copy is present.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash cached artefacts against the manifest.
    Verify {
        /// Names to verify; none = every cached artefact.
        names: Vec<String>,
    },
    /// Print the verified path of one artefact.
    Path {
        /// Artefact name.
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigAction {
    /// Print the effective configuration (defaults, file, overrides).
    Show,
    /// Print the accepted range of every numeric key (Markdown).
    Ranges,
}

#[derive(clap::Args)]
pub(crate) struct FacesArgs {
    /// A video file, a URI, `pipeline:NAME?key=value&...` (see `aullm pipelines`) or `gst:DESCRIPTION`.
    pub(crate) source: String,
    /// Output folder (faces.csv, contact_sheet.png, crops/).
    #[arg(short, long, default_value = "out/faces")]
    pub(crate) out: PathBuf,
    /// Also write aligned crops: a folder of PNGs, or a video file ending in .mkv (lossless) / .avi.
    #[arg(long)]
    pub(crate) crops: Option<PathBuf>,
    /// Skip the contact sheet.
    #[arg(long)]
    pub(crate) no_contact_sheet: bool,
    /// Maximum number of faces tracked at once (face.max_faces).
    #[arg(long)]
    pub(crate) max_faces: Option<usize>,
    /// Run the detector every N frames (face.detect_every).
    #[arg(long)]
    pub(crate) detect_every: Option<u32>,
    /// Disable sub-pixel stabilisation (crops follow raw keypoints).
    #[arg(long)]
    pub(crate) no_stabilise: bool,
    /// Stop after this many frames.
    #[arg(long)]
    pub(crate) max_frames: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn synth(cfg: &Config, a: SynthArgs) -> Result<ExitCode> {
    use aullm::data::synth::SynthConfig;
    use aullm::data::synth::faces::PhotoSet;
    use aullm::data::synth::motion::Family;
    let mut sc = match a.preset.as_str() {
        "ci" => SynthConfig::ci(),
        "bench" => SynthConfig::bench(),
        "general" => SynthConfig::general(),
        "heldout" => SynthConfig::heldout(),
        other => bail!("--preset {other:?}: expected ci, bench, general or heldout"),
    };
    if let Some(names) = &a.family {
        sc.families = names
            .iter()
            .map(|n| Family::parse(n.trim()))
            .collect::<Result<Vec<_>>>()?;
        if sc.families.is_empty() {
            bail!("--family: name at least one of blobs, muscles, mesh");
        }
    }
    let faces = a.faces.clone().unwrap_or_else(|| {
        match a.preset.as_str() {
            "general" => "photos",
            "heldout" => "photos:heldout",
            _ => "astronaut",
        }
        .to_string()
    });
    let photos = match faces.as_str() {
        "photos" => Some(PhotoSet::Train),
        "photos:heldout" => Some(PhotoSet::Heldout),
        "photos:all" => Some(PhotoSet::All),
        _ => None,
    };
    // A held-out family or held-out people make an evaluation set, never training data.
    sc.evaluation_only = sc.families.contains(&Family::Mesh)
        || matches!(photos, Some(PhotoSet::Heldout | PhotoSet::All));
    if let Some(v) = a.seed {
        sc.seed = v;
    }
    if let Some(v) = a.subjects {
        sc.subjects = v.max(1);
    }
    if let Some(v) = a.clips {
        sc.clips_per_subject = v;
    }
    if let Some(v) = a.long_videos {
        sc.long_videos = v;
    }
    if let Some(v) = a.amplitude {
        if v.len() != 2 || !(0.0 < v[0] && v[0] <= v[1]) {
            bail!("--amplitude {v:?}: expected LOW,HIGH with 0 < LOW <= HIGH");
        }
        sc.amplitude = [v[0], v[1]];
    }
    if let Some(v) = a.noise {
        sc.nuisances.noise_sigma = v.max(0.0);
    }
    if let Some(v) = a.flicker {
        sc.nuisances.flicker = v.max(0.0);
    }
    if let Some(v) = a.head_px {
        sc.nuisances.head_px = v.max(0.0);
    }
    if let Some(v) = a.head_deg {
        sc.nuisances.head_deg = v.max(0.0);
    }
    if let Some(v) = a.blinks {
        sc.blinks_per_minute = v.max(0.0);
    }
    if let Some(v) = a.macros {
        sc.macros_per_video = v;
    }
    if let Some(v) = a.micros {
        sc.micros_per_video = v;
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let faces = if let Some(set) = photos {
        aullm::data::synth::faces::manifest_faces(&cfg.models, &cfg.face, set)?
    } else {
        let photo = aullm::fixtures::Photo::astronaut(&cfg.models)?;
        vec![aullm::data::synth::identity::FaceSource::astronaut(photo)]
    };
    let r = aullm::data::synth::generate_from(&sc, &faces, &a.out, threads)?;
    println!(
        "wrote {}: {} subjects, {} clips ({} frames), {} long videos ({} frames) in {:.1} s ({:.0} frames/s)",
        r.root.display(),
        r.subjects,
        r.clips,
        r.clip_frames,
        r.videos,
        r.video_frames,
        r.seconds,
        r.frames_per_second
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn testvideo(cfg: &Config, a: TestvideoArgs) -> Result<ExitCode> {
    use aullm::fixtures::{FaceVideoSpec, Motion, Photo, write_face_video_with};
    use aullm::output::video::VideoCodec;
    let motion = match a.motion.as_str() {
        "still" => Motion::Still,
        "sway" => Motion::Sway {
            amplitude_px: 6.0,
            rotation_deg: 2.0,
            period_frames: a.fps,
            drift_px: 10.0,
        },
        other => bail!("--motion {other:?}: expected still or sway"),
    };
    let codec = match a.codec.as_str() {
        "ffv1" => VideoCodec::Ffv1,
        "raw" => VideoCodec::Raw,
        other => bail!("--codec {other:?}: expected ffv1 or raw"),
    };
    if a.out.extension().and_then(|e| e.to_str()) != Some("mkv") {
        bail!("{}: test videos are Matroska files (.mkv)", a.out.display());
    }
    let spec = FaceVideoSpec {
        width: a.width,
        height: a.height,
        fps: a.fps,
        frames: a.frames,
        noise_sigma: a.noise,
        motion,
        seed: a.seed,
    };
    let photo = Photo::astronaut(&cfg.models)?;
    write_face_video_with(&spec, &photo, &a.out, codec)?;
    println!(
        "wrote {} ({} frames, {}x{} at {} fps)",
        a.out.display(),
        a.frames,
        a.width,
        a.height,
        a.fps
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn faces(cfg: &Config, args: FacesArgs) -> Result<ExitCode> {
    let source = aullm::ingest::Source::parse(&args.source)?;
    let opts = FacesOptions {
        csv: args.out.join("faces.csv"),
        crops: args.crops.as_deref().map(CropsOutput::parse),
        contact_sheet: (!args.no_contact_sheet).then(|| args.out.join("contact_sheet.png")),
        max_frames: args.max_frames,
    };
    let summary = aullm::jobs::faces::run(cfg, &source, &opts, |stop| {
        // A signal ends the stream cleanly: queued frames are processed and outputs completed;
        // a second one quits at once.
        let raised = std::sync::atomic::AtomicBool::new(false);
        let _ = ctrlc::set_handler(move || {
            if raised.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(super::exit::QUIT.into());
            }
            stop.stop();
        });
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    if let Some(e) = &summary.error {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(super::exit::INCOMPLETE));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn models(cfg: &Config, action: ModelsAction) -> Result<ExitCode> {
    let manifest = aullm::assets::manifest(&cfg.models)?;
    let cache = ModelCache::new(cfg.cache_dir());
    match action {
        ModelsAction::List => {
            println!("cache: {}", cache.root().display());
            for a in &manifest.artefacts {
                let state = match cache.status(a) {
                    aullm::models::ArtefactStatus::Ok => "verified".to_string(),
                    aullm::models::ArtefactStatus::Missing => "missing".to_string(),
                    aullm::models::ArtefactStatus::Mismatch { .. } => "HASH MISMATCH".to_string(),
                };
                println!(
                    "{:<16} {:<9} {:<14} {}{}",
                    a.name,
                    if a.required { "required" } else { "optional" },
                    state,
                    a.description,
                    if a.license.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", a.license)
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Fetch { names, all, force } => {
            let list: Vec<&aullm::models::Artefact> = if names.is_empty() {
                manifest
                    .artefacts
                    .iter()
                    .filter(|a| all || a.required)
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| manifest.get(n))
                    .collect::<Result<_>>()?
            };
            let mut failed = 0;
            for a in list {
                match cache.fetch(a, force) {
                    Ok(FetchOutcome::AlreadyPresent) => {
                        println!("ok       {:<16} {}", a.name, cache.path_of(a).display())
                    }
                    Ok(FetchOutcome::Fetched(p)) => {
                        println!("fetched  {:<16} {}", a.name, p.display())
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("FAILED   {:<16} {e:#}", a.name);
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} artefact(s) could not be fetched");
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Verify { names } => {
            let list: Vec<&aullm::models::Artefact> = if names.is_empty() {
                manifest.artefacts.iter().collect()
            } else {
                names
                    .iter()
                    .map(|n| manifest.get(n))
                    .collect::<Result<_>>()?
            };
            let mut bad = 0;
            for a in list {
                if names.is_empty()
                    && matches!(cache.status(a), aullm::models::ArtefactStatus::Missing)
                {
                    println!("missing  {}", a.name);
                    continue;
                }
                match cache.verify(a) {
                    Ok(p) => println!("ok       {:<16} {}", a.name, p.display()),
                    Err(e) => {
                        bad += 1;
                        eprintln!("FAILED   {e:#}");
                    }
                }
            }
            Ok(if bad > 0 {
                ExitCode::from(super::exit::INCOMPLETE)
            } else {
                ExitCode::SUCCESS
            })
        }
        ModelsAction::Path { name } => {
            let a = manifest.get(&name)?;
            println!("{}", cache.resolve(a)?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
