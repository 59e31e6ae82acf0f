//! Image files through OpenCV's own codecs (`cv::imread`, `cv::imwrite`, `cv::imencode`, so the
//! same pixels and the same bytes as before), loaded the first time a command reads or writes an
//! image. The codecs library pulls in GDAL, GDCM, Poppler and ~110 other libraries: linked into
//! the executable they cost every aullm process ~0.25 s of start-up from cold files (0.1 s warm)
//! for work that most commands never do. `build.rs` compiles `shim.cpp` into a small shared
//! object that the executable embeds; it is loaded from an anonymous memory file.

pub mod png;

use anyhow::{Context, Result, anyhow, bail};
use opencv::core::{Mat, Scalar};
use opencv::prelude::*;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::OnceLock;

/// Read as 8-bit gray (`cv::IMREAD_GRAYSCALE`).
pub const IMREAD_GRAYSCALE: i32 = 0;
/// Read as 8-bit BGR (`cv::IMREAD_COLOR`).
pub const IMREAD_COLOR: i32 = 1;
/// JPEG quality, 0 to 100 (`cv::IMWRITE_JPEG_QUALITY`).
pub const IMWRITE_JPEG_QUALITY: i32 = 1;
/// Progressive JPEG, 0 or 1 (`cv::IMWRITE_JPEG_PROGRESSIVE`).
pub const IMWRITE_JPEG_PROGRESSIVE: i32 = 2;
/// Optimised Huffman tables, 0 or 1 (`cv::IMWRITE_JPEG_OPTIMIZE`).
pub const IMWRITE_JPEG_OPTIMIZE: i32 = 3;
/// Restart interval in MCUs (`cv::IMWRITE_JPEG_RST_INTERVAL`).
pub const IMWRITE_JPEG_RST_INTERVAL: i32 = 4;

/// The shim, as `build.rs` compiled it.
static SHIM_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libaullm_imgio.so"));

/// An image's pixels as the shim passes them (`aullm_image` in shim.cpp): rows × cols of
/// OpenCV `typ`, rows `step` bytes apart.
#[repr(C)]
struct Image {
    rows: c_int,
    cols: c_int,
    typ: c_int,
    step: usize,
    data: *mut u8,
}

/// The shim's error message buffer.
struct ErrBuf([c_char; 512]);

impl ErrBuf {
    fn new() -> ErrBuf {
        ErrBuf([0; 512])
    }

    /// (pointer, length) to pass.
    fn raw(&mut self) -> (*mut c_char, usize) {
        (self.0.as_mut_ptr(), self.0.len())
    }

    /// The message the shim wrote.
    fn message(&self) -> String {
        // SAFETY: the shim writes a NUL-terminated string into the buffer (all zeros otherwise).
        unsafe { CStr::from_ptr(self.0.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

type ReadFn = unsafe extern "C" fn(*const c_char, c_int, *mut Image, *mut c_char, usize) -> c_int;
type WriteFn = unsafe extern "C" fn(
    *const c_char,
    *const Image,
    *const c_int,
    c_int,
    *mut c_int,
    *mut c_char,
    usize,
) -> c_int;
type EncodeFn = unsafe extern "C" fn(
    *const c_char,
    *const Image,
    *const c_int,
    c_int,
    *mut *mut u8,
    *mut usize,
    *mut c_char,
    usize,
) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The shim's entry points.
struct Shim {
    read: ReadFn,
    write: WriteFn,
    encode: EncodeFn,
    free: FreeFn,
}

/// The loaded shim (loaded once; a failure is kept and reported on every use).
fn shim() -> Result<&'static Shim> {
    static SHIM: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();
    SHIM.get_or_init(|| load().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// Writes the embedded shim to an anonymous memory file and loads it from there.
fn load() -> Result<Shim> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let name = CString::new("aullm-imgio")?;
    // SAFETY: a plain system call on a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        bail!(
            "cannot create a memory file for OpenCV's image codecs: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(SHIM_BYTES)
        .context("cannot write OpenCV's image codecs shim to a memory file")?;
    let path = CString::new(format!("/proc/self/fd/{fd}"))?;
    // SAFETY: dlopen of a complete shared object; the handle is kept for the process's life.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    drop(file); // the mapping outlives the descriptor
    if handle.is_null() {
        // SAFETY: dlerror returns a C string describing the failed dlopen (or null).
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        bail!("cannot load OpenCV's image codecs (libopencv_imgcodecs): {why}");
    }
    let sym = |n: &str| -> Result<*mut c_void> {
        let c = CString::new(n)?;
        // SAFETY: `handle` is a live handle and `c` a valid C string.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() {
            bail!("OpenCV's image codecs shim has no {n}");
        }
        Ok(p)
    };
    // SAFETY: each symbol is the shim's function of exactly this signature (shim.cpp).
    unsafe {
        Ok(Shim {
            read: std::mem::transmute::<*mut c_void, ReadFn>(sym("aullm_imread")?),
            write: std::mem::transmute::<*mut c_void, WriteFn>(sym("aullm_imwrite")?),
            encode: std::mem::transmute::<*mut c_void, EncodeFn>(sym("aullm_imencode")?),
            free: std::mem::transmute::<*mut c_void, FreeFn>(sym("aullm_free")?),
        })
    }
}

/// A path as the C string OpenCV takes.
fn c_path(path: &Path) -> Result<CString> {
    let s = path
        .to_str()
        .with_context(|| format!("{}: not a UTF-8 path", path.display()))?;
    CString::new(s).with_context(|| format!("{}: a NUL byte in the path", path.display()))
}

/// A buffer the shim allocated, freed when dropped.
struct Owned<'a>(&'a Shim, *mut u8);

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: the pointer came from the shim's malloc and is freed once.
            unsafe { (self.0.free)(self.1.cast()) };
        }
    }
}

/// Calls `f` on `m`'s pixels, or on those of a continuous copy of it.
fn with_image<T>(m: &impl MatTraitConst, f: impl FnOnce(&Image) -> T) -> Result<T> {
    if !m.is_continuous() {
        let copy = m.try_clone()?;
        return with_image(&copy, f);
    }
    let image = Image {
        rows: m.rows(),
        cols: m.cols(),
        typ: m.typ(),
        step: m.cols() as usize * m.elem_size()?,
        data: m.data().cast_mut(),
    };
    Ok(f(&image))
}

/// Reads an image file as `cv::imread(path, flags)` does: an empty Mat when OpenCV cannot read
/// or decode it.
pub fn imread(path: impl AsRef<Path>, flags: i32) -> Result<Mat> {
    let path = path.as_ref();
    let c = c_path(path)?;
    let s = shim()?;
    let mut image = Image {
        rows: 0,
        cols: 0,
        typ: 0,
        step: 0,
        data: std::ptr::null_mut(),
    };
    let mut err = ErrBuf::new();
    let (e, elen) = err.raw();
    // SAFETY: every pointer is valid for the call; the shim fills `image` on success.
    let r = unsafe { (s.read)(c.as_ptr(), flags, &mut image, e, elen) };
    let owned = Owned(s, image.data);
    match r {
        0 => {
            let mut m = Mat::new_rows_cols_with_default(
                image.rows,
                image.cols,
                image.typ,
                Scalar::all(0.0),
            )?;
            let dst = m.data_bytes_mut()?;
            // SAFETY: the shim copied exactly rows * step bytes, the Mat's size.
            let src = unsafe { std::slice::from_raw_parts(owned.1, dst.len()) };
            dst.copy_from_slice(src);
            Ok(m)
        }
        1 => Ok(Mat::default()),
        _ => bail!("OpenCV cannot read {}: {}", path.display(), err.message()),
    }
}

/// Writes `m` as `cv::imwrite(path, m, params)` does (format from the extension); false when
/// OpenCV declined, an error when it failed.
pub fn imwrite(path: impl AsRef<Path>, m: &impl MatTraitConst, params: &[i32]) -> Result<bool> {
    let path = path.as_ref();
    let c = c_path(path)?;
    let s = shim()?;
    let (mut ok, mut err) = (0, ErrBuf::new());
    let (e, elen) = err.raw();
    // SAFETY: the image's pixels live for the call; `params` is read only.
    let r = with_image(m, |image| unsafe {
        (s.write)(
            c.as_ptr(),
            image,
            params.as_ptr(),
            params.len() as c_int,
            &mut ok,
            e,
            elen,
        )
    })?;
    if r != 0 {
        bail!("OpenCV cannot write {}: {}", path.display(), err.message());
    }
    Ok(ok != 0)
}

/// Encodes `m` as `cv::imencode(ext, m, params)` does (`ext` such as ".png").
pub fn imencode(ext: &str, m: &impl MatTraitConst, params: &[i32]) -> Result<Vec<u8>> {
    let c = CString::new(ext).context("image extension")?;
    let s = shim()?;
    let (mut out, mut len, mut err) = (std::ptr::null_mut(), 0usize, ErrBuf::new());
    let (e, elen) = err.raw();
    // SAFETY: as in `imwrite`; the shim fills `out` and `len` on success.
    let r = with_image(m, |image| unsafe {
        (s.encode)(
            c.as_ptr(),
            image,
            params.as_ptr(),
            params.len() as c_int,
            &mut out,
            &mut len,
            e,
            elen,
        )
    })?;
    let owned = Owned(s, out);
    match r {
        // SAFETY: the shim allocated `len` bytes at `out`.
        0 => Ok(unsafe { std::slice::from_raw_parts(owned.1, len) }.to_vec()),
        1 => bail!(
            "OpenCV could not encode a {}x{} image as {ext}",
            m.rows(),
            m.cols()
        ),
        _ => bail!("OpenCV cannot encode {ext}: {}", err.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_png_round_trip_and_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let px: Vec<u8> = (0..12 * 7).map(|i| (i * 3) as u8).collect();
        let m = Mat::new_rows_cols_with_data(7, 12, &px).unwrap();
        let p = d.path().join("a.png");
        assert!(imwrite(&p, &m, &[]).unwrap());
        let back = imread(&p, IMREAD_GRAYSCALE).unwrap();
        assert_eq!((back.rows(), back.cols()), (7, 12));
        assert_eq!(back.data_bytes().unwrap(), &px[..]);
        assert_eq!(
            imencode(".png", &m, &[]).unwrap(),
            std::fs::read(&p).unwrap()
        );
        // A region that is not its storage's start or continuous is written as its pixels.
        let roi = m.roi(opencv::core::Rect::new(2, 1, 5, 4)).unwrap();
        let back = imread_bytes(&imencode(".png", &roi, &[]).unwrap(), d.path());
        let want: Vec<u8> = (1..5)
            .flat_map(|y| px[y * 12 + 2..y * 12 + 7].to_vec())
            .collect();
        assert_eq!(back, want);
        assert!(imread(d.path().join("missing.png"), 0).unwrap().empty());
        std::fs::write(d.path().join("junk.png"), b"not an image").unwrap();
        assert!(imread(d.path().join("junk.png"), 0).unwrap().empty());
        let e = imwrite(d.path().join("x.unknown"), &m, &[]).unwrap_err();
        assert!(format!("{e:#}").contains("x.unknown"), "{e:#}");
    }

    /// Gray pixels of an encoded image, through a file.
    fn imread_bytes(bytes: &[u8], dir: &Path) -> Vec<u8> {
        let p = dir.join("roi.png");
        std::fs::write(&p, bytes).unwrap();
        imread(&p, IMREAD_GRAYSCALE)
            .unwrap()
            .data_bytes()
            .unwrap()
            .to_vec()
    }
}
