//! ONNX Runtime: one environment per process, loaded from the manifest's verified library.
//! Used by face detection and the detector; imports nothing from the crate.

use anyhow::{Context, Result, anyhow};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The process-wide ONNX Runtime environment and the library it came from.
struct Runtime {
    env: ort::environment::Environment,
    lib: PathBuf,
    version: String,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime from `lib` (once per process; later calls reuse the first library).
pub fn init(lib: &Path) -> Result<()> {
    let _guard = INIT_LOCK
        .lock()
        .map_err(|_| anyhow!("ONNX Runtime init lock poisoned"))?;
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let version = library_version(lib)?;
    let env = ort::init_from(lib)
        .map_err(|e| anyhow!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
        .with_name("aullm")
        .build()
        .map_err(|e| anyhow!("cannot create the ONNX Runtime environment: {e}"))?;
    let _ = RUNTIME.set(Runtime {
        env,
        lib: lib.to_path_buf(),
        version,
    });
    Ok(())
}

/// Version string of the loaded ONNX Runtime, if loaded.
pub fn version() -> Option<&'static str> {
    RUNTIME.get().map(|r| r.version.as_str())
}

/// Path of the loaded ONNX Runtime library, if loaded.
pub fn library() -> Option<&'static Path> {
    RUNTIME.get().map(|r| r.lib.as_path())
}

/// Reads `OrtGetApiBase()->GetVersionString()` from a library without initialising ort.
pub fn library_version(lib: &Path) -> Result<String> {
    // SAFETY: loading ONNX Runtime runs no foreign initialisers beyond the library's own.
    let handle = unsafe { libloading::Library::new(lib) }
        .with_context(|| format!("cannot load ONNX Runtime library {}", lib.display()))?;
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: OrtGetApiBase is the library's documented C entry point with this signature.
    let base = unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn() -> *const ApiBase> = handle
            .get(b"OrtGetApiBase")
            .with_context(|| format!("{} does not export OrtGetApiBase", lib.display()))?;
        f()
    };
    if base.is_null() {
        return Err(anyhow!("{}: OrtGetApiBase returned null", lib.display()));
    }
    // SAFETY: base is non-null and points at a static OrtApiBase; the string is static too.
    let v = unsafe { std::ffi::CStr::from_ptr(((*base).get_version_string)()) };
    let v = v.to_string_lossy().into_owned();
    // Keep the library mapped: ort will dlopen the same path and must see the same instance.
    std::mem::forget(handle);
    Ok(v)
}

/// Name of the CPU execution provider.
pub const CPU_EP: &str = "CPUExecutionProvider";
/// Name of the CUDA execution provider.
pub const CUDA_EP: &str = "CUDAExecutionProvider";

/// Execution provider of sessions built by [`session`] (the face detector: tiny, latency-bound).
pub fn execution_provider() -> &'static str {
    CPU_EP
}

/// True when the loaded ONNX Runtime was built with the CUDA execution provider (onnxruntime-gpu).
pub fn cuda_available() -> bool {
    use ort::ep::ExecutionProvider;
    RUNTIME.get().is_some() && ort::ep::CUDA::is_available().unwrap_or(false)
}

/// Which execution provider a session asks for (`frontend.execution_provider`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderChoice {
    /// CUDA when the loaded ONNX Runtime has it, else the CPU (logged).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA; falls back to the CPU with a warning when it cannot be met.
    Cuda,
}

/// Opens a model on the requested provider. A CUDA request that cannot be met falls back to the
/// CPU with a logged warning. Returns the session and the provider actually active.
pub fn session_on(
    model: &Path,
    threads: usize,
    provider: ProviderChoice,
) -> Result<(Session, &'static str)> {
    let want_cuda = provider != ProviderChoice::Cpu;
    if want_cuda && cuda_available() {
        let rt = RUNTIME
            .get()
            .ok_or_else(|| anyhow!("ONNX Runtime is not loaded (call onnx::init first)"))?;
        let attempt = Session::builder(&rt.env)
            .and_then(|b| {
                b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                    .map_err(ort::Error::from)
            })
            .and_then(|mut b| b.commit_from_file(model));
        match attempt {
            Ok(s) => return Ok((s, CUDA_EP)),
            Err(e) => tracing::warn!(
                model = %model.display(),
                "CUDA execution provider failed ({e}); falling back to the CPU"
            ),
        }
    } else if provider == ProviderChoice::Cuda {
        tracing::warn!(
            model = %model.display(),
            "the loaded ONNX Runtime has no CUDA execution provider (it is onnxruntime-gpu's); falling back to the CPU"
        );
    } else if want_cuda {
        tracing::info!("no CUDA execution provider in the loaded ONNX Runtime: using the CPU");
    }
    Ok((session(model, threads)?, CPU_EP))
}

/// Opens a model file as a CPU session with `threads` intra-op threads.
pub fn session(model: &Path, threads: usize) -> Result<Session> {
    let rt = RUNTIME
        .get()
        .ok_or_else(|| anyhow!("ONNX Runtime is not loaded (call onnx::init first)"))?;
    // Builder errors carry the builder and are not Send; keep only their message.
    let err =
        |what: &str, e: &dyn std::fmt::Display| anyhow!("{what} for {}: {e}", model.display());
    Session::builder(&rt.env)
        .map_err(|e| err("cannot create an ONNX Runtime session builder", &e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err("cannot set the optimisation level", &e))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| err("cannot set intra-op threads", &e))?
        .with_inter_threads(1)
        .map_err(|e| err("cannot set inter-op threads", &e))?
        .commit_from_file(model)
        .map_err(|e| err("cannot load ONNX model", &e))
}
