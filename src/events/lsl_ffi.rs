//! The few liblsl C functions aullm needs, loaded at run time from liblsl.so.2 (lsl_c.h signatures).

use anyhow::{Context, Result, bail};
use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};

type Info = *mut c_void;
type RawOutlet = *mut c_void;

/// An `lsl_outlet` created by [`LslLib::outlet`] and ended by [`LslLib::destroy`].
pub struct Outlet(RawOutlet);

// SAFETY: liblsl outlets may be used from any thread (lsl_c.h: outlet functions are thread-safe).
unsafe impl Send for Outlet {}
type Xml = *mut c_void;

/// `lsl_channel_format_t` values from lsl_c.h.
#[derive(Clone, Copy)]
#[repr(i32)]
pub enum ChannelFormat {
    /// 32-bit float.
    Float32 = 1,
    /// Variable-length string.
    String = 3,
}

/// What an outlet streams.
pub struct StreamSpec<'a> {
    /// Stream name (what inlets resolve).
    pub name: &'a str,
    /// Stream type, e.g. "Markers".
    pub kind: &'a str,
    /// Channel format.
    pub format: ChannelFormat,
    /// Number of channels.
    pub channels: usize,
    /// Channel labels (empty, or one per channel).
    pub labels: &'a [String],
    /// Unique source id (lets inlets recover after a restart).
    pub source_id: &'a str,
    /// Seconds of data kept for slow inlets.
    pub max_buffered_s: i32,
}

/// liblsl, loaded once; its functions are thread-safe (liblsl documents outlets as such).
pub struct LslLib {
    path: PathBuf,
    create_streaminfo:
        unsafe extern "C" fn(*const c_char, *const c_char, i32, f64, i32, *const c_char) -> Info,
    destroy_streaminfo: unsafe extern "C" fn(Info),
    get_desc: unsafe extern "C" fn(Info) -> Xml,
    append_child: unsafe extern "C" fn(Xml, *const c_char) -> Xml,
    append_child_value: unsafe extern "C" fn(Xml, *const c_char, *const c_char) -> Xml,
    create_outlet: unsafe extern "C" fn(Info, i32, i32) -> RawOutlet,
    destroy_outlet: unsafe extern "C" fn(RawOutlet),
    push_sample_strt: unsafe extern "C" fn(RawOutlet, *const *const c_char, f64) -> i32,
    push_sample_ftp: unsafe extern "C" fn(RawOutlet, *const f32, f64, i32) -> i32,
    have_consumers: unsafe extern "C" fn(RawOutlet) -> i32,
    local_clock: unsafe extern "C" fn() -> f64,
    // Kept last so the function pointers above are never used after the library is unloaded.
    _lib: libloading::Library,
}

// SAFETY: the struct holds plain function pointers into a library that stays loaded while it lives.
unsafe impl Send for LslLib {}
unsafe impl Sync for LslLib {}

macro_rules! sym {
    ($lib:expr, $path:expr, $name:literal) => {
        // SAFETY: the type given at the use site is the lsl_c.h signature of this symbol.
        *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }.with_context(|| {
            format!(
                "{} has no symbol {} (is it liblsl >= 1.14?)",
                $path.display(),
                $name
            )
        })?
    };
}

impl LslLib {
    /// Loads liblsl from `path` (the `liblsl` artefact or `$LSL_LIB`).
    pub fn load(path: &Path) -> Result<Self> {
        // SAFETY: loading liblsl runs only its own static initialisers.
        let lib = unsafe { libloading::Library::new(path) }
            .with_context(|| format!("cannot load liblsl from {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            create_streaminfo: sym!(lib, path, "lsl_create_streaminfo"),
            destroy_streaminfo: sym!(lib, path, "lsl_destroy_streaminfo"),
            get_desc: sym!(lib, path, "lsl_get_desc"),
            append_child: sym!(lib, path, "lsl_append_child"),
            append_child_value: sym!(lib, path, "lsl_append_child_value"),
            create_outlet: sym!(lib, path, "lsl_create_outlet"),
            destroy_outlet: sym!(lib, path, "lsl_destroy_outlet"),
            push_sample_strt: sym!(lib, path, "lsl_push_sample_strt"),
            push_sample_ftp: sym!(lib, path, "lsl_push_sample_ftp"),
            have_consumers: sym!(lib, path, "lsl_have_consumers"),
            local_clock: sym!(lib, path, "lsl_local_clock"),
            _lib: lib,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `lsl_local_clock()`: seconds on LSL's clock.
    pub fn local_clock(&self) -> f64 {
        // SAFETY: no arguments, no state.
        unsafe { (self.local_clock)() }
    }

    /// Creates an irregular-rate outlet as `spec` describes; labels go into the stream's XML
    /// description as `<channels><channel><label>`.
    pub fn outlet(&self, spec: &StreamSpec) -> Result<Outlet> {
        let StreamSpec {
            name,
            kind,
            format,
            channels,
            labels,
            source_id,
            max_buffered_s,
        } = *spec;
        let c = |s: &str| CString::new(s).with_context(|| format!("LSL name {s:?} contains NUL"));
        let (cname, ckind, csrc) = (c(name)?, c(kind)?, c(source_id)?);
        // SAFETY: valid NUL-terminated strings; irregular rate is 0.0 (LSL_IRREGULAR_RATE).
        let info = unsafe {
            (self.create_streaminfo)(
                cname.as_ptr(),
                ckind.as_ptr(),
                channels as i32,
                0.0,
                format as i32,
                csrc.as_ptr(),
            )
        };
        if info.is_null() {
            bail!("lsl_create_streaminfo failed for stream {name:?}");
        }
        if !labels.is_empty() {
            let (chs, ch, label) = (c("channels")?, c("channel")?, c("label")?);
            // SAFETY: info is a live streaminfo; lsl_get_desc returns its own XML node.
            unsafe {
                let root = (self.append_child)((self.get_desc)(info), chs.as_ptr());
                for l in labels {
                    let v = c(l)?;
                    let node = (self.append_child)(root, ch.as_ptr());
                    (self.append_child_value)(node, label.as_ptr(), v.as_ptr());
                }
            }
        }
        // SAFETY: the outlet copies the streaminfo, which is then ours to destroy.
        let outlet = unsafe { (self.create_outlet)(info, 0, max_buffered_s) };
        unsafe { (self.destroy_streaminfo)(info) };
        if outlet.is_null() {
            bail!("lsl_create_outlet failed for stream {name:?}");
        }
        Ok(Outlet(outlet))
    }

    /// Pushes one string sample with an explicit LSL-clock timestamp.
    pub fn push_string(&self, outlet: &Outlet, text: &CString, timestamp: f64) -> Result<()> {
        let ptrs = [text.as_ptr()];
        // SAFETY: outlet is live; one channel, one valid string pointer.
        let rc = unsafe { (self.push_sample_strt)(outlet.0, ptrs.as_ptr(), timestamp) };
        if rc < 0 {
            bail!("lsl_push_sample_strt returned error {rc}");
        }
        Ok(())
    }

    /// Pushes one float sample (as many values as the outlet has channels), sent at once.
    pub fn push_floats(&self, outlet: &Outlet, values: &[f32], timestamp: f64) -> Result<()> {
        // SAFETY: outlet is live and was created with values.len() float32 channels.
        let rc = unsafe { (self.push_sample_ftp)(outlet.0, values.as_ptr(), timestamp, 1) };
        if rc < 0 {
            bail!("lsl_push_sample_ftp returned error {rc}");
        }
        Ok(())
    }

    /// Whether any inlet is connected to `outlet`.
    pub fn have_consumers(&self, outlet: &Outlet) -> bool {
        // SAFETY: outlet is live.
        unsafe { (self.have_consumers)(outlet.0) != 0 }
    }

    /// Destroys an outlet (closing its connections).
    pub fn destroy(&self, outlet: Outlet) {
        // SAFETY: called once per outlet, by its owner.
        unsafe { (self.destroy_outlet)(outlet.0) }
    }
}
