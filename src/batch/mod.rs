//! `aullm batch`: recorded videos through the same stages as the live pipeline (no drops: a
//! recording waits for inference), in parallel across videos, resumable and shardable. Per video:
//! events JSONL (the live schema), a per-frame CSV in OpenFace's style, a self-contained HTML
//! report, and `done.json` written last, listing every output with its SHA-256.
//! May import: config, stream, runtime, events, ingest, models, atomic.

pub mod inputs;
pub mod report;

use crate::atomic::AtomicFile;
use crate::config::Config;
use crate::events::{EventBus, ExpressionKind, LslClock};
use crate::ingest::Source;
use crate::runtime::detector::{Detector, DetectorSlot};
use crate::stream::{Recording, StreamOptions};
use anyhow::{Context, Result, bail};
use inputs::Input;
use report::IndexRow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The per-video completion manifest's schema tag.
pub const DONE_SCHEMA: &str = "aullm.batch_video/1";

/// What `aullm batch` was asked to do.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Files, folders and list files.
    pub inputs: Vec<PathBuf>,
    /// File-name filter for folders (default: video extensions).
    pub glob: Option<String>,
    /// Output folder.
    pub out: PathBuf,
    /// Videos processed at once.
    pub jobs: usize,
    /// Skip videos whose outputs are complete and valid.
    pub resume: bool,
    /// `(I, N)`: process shard I of N.
    pub shard: Option<(usize, usize)>,
    /// Model folder.
    pub model_dir: PathBuf,
    /// No progress display.
    pub quiet: bool,
    /// Set by Ctrl-C: finish the videos in progress, start no new one.
    pub stop: Arc<AtomicBool>,
}

/// `done.json`: a video's outputs are complete and these are their hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneManifest {
    /// [`DONE_SCHEMA`].
    pub schema: String,
    /// The input file.
    pub input: String,
    /// Its size in bytes and modification time (ns), to notice a changed input.
    pub input_stamp: (u64, i128),
    /// Model id and the SHA-256 of its model.json.
    pub model: (String, String),
    /// Output file → SHA-256.
    pub files: BTreeMap<String, String>,
    /// The index line.
    pub row: IndexRow,
}

/// What a batch did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    /// Inputs in this shard.
    pub videos: usize,
    /// Processed now.
    pub processed: usize,
    /// Skipped because complete (`--resume`).
    pub skipped: usize,
    /// Failed, with why.
    pub failed: Vec<(String, String)>,
    /// Not started because a signal stopped the batch (ids; `--resume` does them).
    pub not_processed: Vec<String>,
    /// Why index.csv / index.html could not be written (a full disk), if so.
    pub index_error: Option<String>,
    /// Seconds of video processed now.
    pub video_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
    /// Video seconds per wall second.
    pub speed: f64,
}

impl BatchSummary {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} videos: {} processed, {} already complete, {} failed; {:.1} s of video in {:.1} s ({:.2}x real time)\n",
            self.videos,
            self.processed,
            self.skipped,
            self.failed.len(),
            self.video_seconds,
            self.wall_seconds,
            self.speed
        );
        for (id, e) in &self.failed {
            s.push_str(&format!("  failed {id}: {e}\n"));
        }
        if let Some(e) = &self.index_error {
            s.push_str(&format!("error: the index was not written: {e}\n"));
        }
        if !self.not_processed.is_empty() {
            s.push_str(&format!(
                "interrupted: {} videos not processed (listed in the index as \"not processed\"; run again with --resume)\n",
                self.not_processed.len()
            ));
        }
        s
    }
}

/// Size and modification time of a file.
fn stamp(p: &Path) -> Result<(u64, i128)> {
    let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    Ok((m.len(), t))
}

/// Whether `dir` holds complete, unmodified outputs of `input` by `model`.
pub fn is_complete(dir: &Path, input: &Path, model: &(String, String)) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("done.json")) else {
        return false;
    };
    let Ok(m) = serde_json::from_str::<DoneManifest>(&text) else {
        return false;
    };
    m.schema == DONE_SCHEMA
        && &m.model == model
        && stamp(input).is_ok_and(|s| s == m.input_stamp)
        && m.files
            .iter()
            .all(|(f, h)| crate::models::sha256_file(&dir.join(f)).is_ok_and(|g| &g == h))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}

/// The per-frame CSV: OpenFace-style identity and tracking columns, the spotting signal, and per AU
/// a probability and a decision, filled on the frames of each detected interval (empty elsewhere).
pub fn frames_csv(rec: &Recording, aus: &[String]) -> String {
    let mut covered: HashMap<(u32, u64), usize> = HashMap::new();
    for (i, e) in rec.events.iter().enumerate() {
        for f in e.onset.frame..=e.offset.frame {
            covered.entry((e.face_id, f)).or_insert(i);
        }
    }
    let mut s = String::from("frame,face_id,timestamp,confidence,success,detected,spot_signal");
    for a in aus {
        s.push_str(&format!(",{a}_p,{a}_c"));
    }
    s.push('\n');
    for r in &rec.frames {
        s.push_str(&format!(
            "{},{},{:.6},{:.4},{},{},{}",
            r.frame,
            r.face_id,
            r.timestamp,
            r.confidence,
            r.success as u8,
            r.detected as u8,
            r.signal.map_or(String::new(), |v| format!("{v:.4}"))
        ));
        match covered.get(&(r.face_id, r.frame)) {
            Some(&i) => {
                for d in &rec.events[i].aus {
                    s.push_str(&format!(",{:.4},{}", d.probability, d.present as u8));
                }
            }
            None => s.push_str(&",,".repeat(aus.len())),
        }
        s.push('\n');
    }
    s
}

/// Processes one video into `dir`; returns its index row.
pub fn process_video(
    cfg: &Config,
    input: &Input,
    dir: &Path,
    det: &mut DetectorSlot<'_>,
    model: &(String, String),
    progress: Arc<AtomicU64>,
    decode_ahead: bool,
) -> Result<IndexRow> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("done.json"));
    let _ = std::fs::remove_file(dir.join("failed.json"));
    // Temporary files of an earlier run of this video that died (kill -9, full disk).
    let swept = crate::atomic::sweep_partials(dir);
    if swept > 0 {
        tracing::info!(
            "{}: removed {swept} temporary file(s) of an earlier run",
            dir.display()
        );
    }
    let bus = EventBus::new(Vec::new(), 64, LslClock::monotonic());
    let opts = StreamOptions {
        record: true,
        offline_origin_ns: Some(0),
        progress: Some(progress),
        // One clip per model call: batch composition would otherwise depend on timing and change
        // the last bits of the probabilities between runs (resumed outputs must be identical).
        max_batch: 1,
        decode_ahead,
        ..StreamOptions::from_config(cfg)
    };
    let mut seq = 0;
    let source = Source::File(input.path.clone());
    let summary = crate::stream::run(cfg, &source, det, &bus, &opts, &mut seq)?;
    bus.close();
    if let Some(e) = &summary.error {
        bail!("{e}");
    }
    if summary.frames == 0 {
        bail!("no frame could be decoded");
    }
    if summary.faces == 0 {
        bail!("no face found in {} frames", summary.frames);
    }
    let rec = summary.recording.context("the run kept no recording")?;
    let aus: Vec<String> = det
        .get()?
        .manifest
        .aus
        .iter()
        .map(|a| format!("AU{a}"))
        .collect();
    let duration = rec.frames.last().map_or(0.0, |r| r.timestamp) + 1.0 / summary.fps.max(1.0);
    let events: String = rec.events.iter().map(|e| e.to_json() + "\n").collect();
    let micro = rec
        .events
        .iter()
        .filter(|e| e.kind == ExpressionKind::Micro)
        .count() as u64;
    let row = IndexRow {
        id: input.id.clone(),
        input: input.path.display().to_string(),
        status: "ok".into(),
        duration_s: duration,
        frames: summary.frames,
        events: [micro, rec.events.len() as u64 - micro],
        error: None,
    };
    let files: [(&str, Vec<u8>); 3] = [
        ("events.jsonl", events.into_bytes()),
        ("frames.csv", frames_csv(&rec, &aus).into_bytes()),
        (
            "report.html",
            report::video_page(&input.id, &row.input, &rec, duration, &model.0, None)?.into_bytes(),
        ),
    ];
    let mut hashes = BTreeMap::new();
    for (name, bytes) in &files {
        write_atomic(&dir.join(name), bytes)?;
        hashes.insert(
            name.to_string(),
            crate::models::sha256_file(&dir.join(name))?,
        );
    }
    let done = DoneManifest {
        schema: DONE_SCHEMA.into(),
        input: row.input.clone(),
        input_stamp: stamp(&input.path)?,
        model: model.clone(),
        files: hashes,
        row: row.clone(),
    };
    // Written last: only a video with done.json counts as complete.
    write_atomic(
        &dir.join("done.json"),
        serde_json::to_string_pretty(&done)?.as_bytes(),
    )?;
    let _ = std::fs::remove_file(dir.join("failed.json"));
    Ok(row)
}

/// Runs a batch.
pub fn run(cfg: &Config, o: &BatchOptions) -> Result<BatchSummary> {
    let t0 = Instant::now();
    let mut all = inputs::collect(&o.inputs, o.glob.as_deref())?;
    if let Some((i, n)) = o.shard {
        all = inputs::shard(all, i, n);
    }
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("cannot create {}", o.out.display()))?;
    let m = crate::runtime::bundle::verify(&o.model_dir)?;
    let model = (
        m.name.clone(),
        crate::models::sha256_file(&o.model_dir.join("model.json"))?,
    );
    let (mut todo, done): (Vec<Input>, Vec<Input>) = all
        .iter()
        .cloned()
        .partition(|i| !(o.resume && is_complete(&o.out.join(&i.id), &i.path, &model)));
    inputs::longest_first(&mut todo);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Input, Result<IndexRow, String>)>> = Mutex::new(Vec::new());
    let jobs = o.jobs.clamp(1, todo.len().max(1));
    // A worker with a core to spare decodes MJPEG beside its face thread; with a worker per core,
    // decoding on the face thread saves the hand-over and the larger look-ahead regions.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let decode_ahead = jobs * 2 <= cores;
    // With a worker per core, a reasoner spread over every core (`reasoner.threads = 0`) hands
    // each layer's work to the global pool's threads and waits: ~130 thread switches per clip
    // and spinning threads beside the other workers. One thread per worker instead (the same
    // logits: each output is summed in the same order on any number of threads).
    let mut load_cfg = cfg.clone();
    if jobs >= cores && cfg.reasoner.threads == 0 {
        load_cfg.reasoner.threads = 1;
    }
    let load_cfg = &load_cfg;
    let slots: Vec<(Mutex<String>, Arc<AtomicU64>)> = (0..jobs)
        .map(|_| (Mutex::new(String::new()), Arc::new(AtomicU64::new(0))))
        .collect();
    let finished = AtomicBool::new(false);
    // One load, on its own thread while the workers start decoding; they share its weights.
    let frames = Config::load(Some(&o.model_dir.join("config.toml")), &[])
        .with_context(|| format!("model {}: its config.toml", m.name))?
        .frontend
        .frames;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..jobs).map(|_| crossbeam_channel::bounded(1)).unzip();
    let load_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| -> Result<()> {
        let load_error = &load_error;
        s.spawn(move || {
            let t_load = Instant::now();
            let load = || {
                Detector::load(&o.model_dir, load_cfg, None).and_then(|first| {
                    let mut dets = (1..jobs)
                        .map(|_| first.fork())
                        .collect::<Result<Vec<_>>>()?;
                    dets.insert(0, first);
                    Ok(dets)
                })
            };
            // With a worker per core the load's parallel passes only take turns with the
            // workers, and the pool's idle threads spin between them: load on one thread
            // (measured 2.4 % less wall time on 8 videos; the weights are the same).
            let one_thread = (jobs >= cores)
                .then(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
                .flatten();
            let loaded = match &one_thread {
                Some(pool) => pool.install(load),
                None => load(),
            };
            match loaded {
                Ok(dets) => {
                    tracing::info!("model loaded in {:.2} s", t_load.elapsed().as_secs_f64());
                    for (tx, d) in senders.iter().zip(dets) {
                        let _ = tx.send(Ok(d));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    *load_error.lock().expect("load error") = Some(msg.clone());
                    for tx in &senders {
                        let _ = tx.send(Err(msg.clone()));
                    }
                }
            }
        });
        let mut handles = Vec::new();
        for ((w, slot), rx) in slots.iter().enumerate().zip(receivers) {
            let mut det = DetectorSlot::Pending {
                rx,
                got: None,
                name: m.name.clone(),
                frames,
            };
            let (todo, next, results, model) = (&todo, &next, &results, &model);
            handles.push(s.spawn(move || -> Result<()> {
                loop {
                    if o.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(input) = todo.get(k) else { return Ok(()) };
                    *slot.0.lock().expect("slot") = input.id.clone();
                    slot.1.store(0, Ordering::Relaxed);
                    let dir = o.out.join(&input.id);
                    let r = process_video(
                        cfg,
                        input,
                        &dir,
                        &mut det,
                        model,
                        slot.1.clone(),
                        decode_ahead,
                    )
                        .map_err(|e| format!("{e:#}"));
                    if let Err(e) = &r {
                        let _ = std::fs::create_dir_all(&dir);
                        let _ = write_atomic(
                            &dir.join("failed.json"),
                            serde_json::json!({"input": input.path.display().to_string(), "error": e})
                                .to_string()
                                .as_bytes(),
                        );
                    }
                    tracing::debug!("worker {w}: {} done", input.id);
                    results.lock().expect("results").push((input.clone(), r));
                    slot.0.lock().expect("slot").clear();
                }
            }));
        }
        let progress = (!o.quiet).then(|| {
            let (todo_n, results, slots, finished) = (todo.len(), &results, &slots, &finished);
            s.spawn(move || progress_loop(todo_n, results, slots, finished, t0))
        });
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => {
                    first_err = first_err.or(Some(anyhow::anyhow!("a batch worker panicked")))
                }
            }
        }
        finished.store(true, Ordering::SeqCst);
        // Wake the progress thread instead of letting the scope wait out its sleep.
        if let Some(p) = &progress {
            p.thread().unpark();
        }
        first_err.map_or(Ok(()), Err)
    })?;
    // A model that cannot load fails the batch as a whole, not video by video.
    if let Some(e) = load_error.into_inner().expect("load error") {
        bail!("model {}: {e}", o.model_dir.display());
    }
    let results = results.into_inner().expect("results");
    let mut failed = Vec::new();
    let mut video_seconds = 0.0;
    for (i, r) in &results {
        match r {
            Ok(row) => video_seconds += row.duration_s,
            Err(e) => failed.push((i.id.clone(), e.clone())),
        }
    }
    failed.sort();
    // Workers take inputs in order: those past the last one taken were never started.
    let started = next.load(Ordering::SeqCst).min(todo.len());
    let pending: Vec<IndexRow> = todo[started..]
        .iter()
        .map(|i| IndexRow {
            id: i.id.clone(),
            input: i.path.display().to_string(),
            status: "not processed".into(),
            duration_s: 0.0,
            frames: 0,
            events: [0, 0],
            error: Some("the batch was stopped by a signal before this video".into()),
        })
        .collect();
    // A full disk fails the index too: the per-video results are still reported.
    let index_error = write_index_with(std::slice::from_ref(&o.out), &o.out, &pending)
        .err()
        .map(|e| format!("{e:#}"));
    let wall = t0.elapsed().as_secs_f64();
    Ok(BatchSummary {
        videos: all.len(),
        processed: results.len() - failed.len(),
        skipped: done.len(),
        failed,
        not_processed: pending.into_iter().map(|r| r.id).collect(),
        index_error,
        video_seconds,
        wall_seconds: wall,
        speed: video_seconds / wall.max(1e-9),
    })
}

/// One progress line per worker and an overall line with an ETA, redrawn every second on a
/// terminal, every 10 s otherwise.
fn progress_loop(
    total: usize,
    results: &Mutex<Vec<(Input, Result<IndexRow, String>)>>,
    slots: &[(Mutex<String>, Arc<AtomicU64>)],
    finished: &AtomicBool,
    t0: Instant,
) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut drawn = 0;
    while !finished.load(Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(200));
        if finished.load(Ordering::SeqCst) {
            break;
        }
        if t0.elapsed().as_millis() % every.as_millis() >= 200 {
            continue;
        }
        let (n, failed) = {
            let r = results.lock().expect("results");
            (r.len(), r.iter().filter(|x| x.1.is_err()).count())
        };
        let el = t0.elapsed().as_secs_f64();
        let eta = if n > 0 {
            el / n as f64 * (total - n) as f64
        } else {
            f64::NAN
        };
        let mut lines = vec![format!(
            "videos {n}/{total} done ({failed} failed), {el:.0} s elapsed, ETA {}",
            if eta.is_finite() {
                format!("{eta:.0} s")
            } else {
                "-".into()
            }
        )];
        for (w, (name, frames)) in slots.iter().enumerate() {
            let name = name.lock().expect("slot").clone();
            if !name.is_empty() {
                lines.push(format!(
                    "  [{}] {name}: {} frames",
                    w + 1,
                    frames.load(Ordering::Relaxed)
                ));
            }
        }
        let mut e = std::io::stderr();
        if tty {
            for _ in 0..drawn {
                let _ = write!(e, "\x1b[1A\x1b[2K");
            }
        }
        for l in &lines {
            let _ = writeln!(e, "{l}");
        }
        drawn = lines.len();
    }
}

/// Reads every video's done.json / failed.json under `dirs` and writes index.html and
/// index.csv into `out`; returns the rows.
pub fn write_index(dirs: &[PathBuf], out: &Path) -> Result<Vec<IndexRow>> {
    write_index_with(dirs, out, &[])
}

/// [`write_index`] with rows of inputs that have no folder (not processed).
fn write_index_with(dirs: &[PathBuf], out: &Path, pending: &[IndexRow]) -> Result<Vec<IndexRow>> {
    let mut rows: BTreeMap<String, IndexRow> = BTreeMap::new();
    for r in pending {
        rows.insert(r.id.clone(), r.clone());
    }
    for d in dirs {
        let rd = std::fs::read_dir(d).with_context(|| format!("cannot list {}", d.display()))?;
        for e in rd {
            let p = e?.path();
            if !p.is_dir() {
                continue;
            }
            let id = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if let Ok(t) = std::fs::read_to_string(p.join("done.json"))
                && let Ok(m) = serde_json::from_str::<DoneManifest>(&t)
            {
                rows.insert(id, m.row);
            } else if let Ok(t) = std::fs::read_to_string(p.join("failed.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&t)
            {
                rows.entry(id.clone()).or_insert(IndexRow {
                    id,
                    input: v["input"].as_str().unwrap_or("").into(),
                    status: "failed".into(),
                    duration_s: 0.0,
                    frames: 0,
                    events: [0, 0],
                    error: v["error"].as_str().map(str::to_string),
                });
            }
        }
    }
    let rows: Vec<IndexRow> = rows.into_values().collect();
    std::fs::create_dir_all(out)?;
    write_atomic(
        &out.join("index.html"),
        report::index_page(&rows).as_bytes(),
    )?;
    // Text fields are always quoted: a name may hold commas, quotes or newlines.
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv =
        String::from("video,input,status,duration_s,frames,micro_events,macro_events,error\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{:.3},{},{},{},{}\n",
            q(&r.id),
            q(&r.input),
            q(&r.status),
            r.duration_s,
            r.frames,
            r.events[0],
            r.events[1],
            q(r.error.as_deref().unwrap_or(""))
        ));
    }
    write_atomic(&out.join("index.csv"), csv.as_bytes())?;
    Ok(rows)
}
