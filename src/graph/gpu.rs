//! Launches aullm's own CUDA kernels (`src/graph/cuda/kernels.cu`, compiled to PTX by build.rs):
//! the GPU paths of the im2col convolution and the Laplacian, so a GPU runs the same algorithm as
//! the CPU kernels instead of candle's direct transposed convolution.

use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{Layout, Result, bail};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/aullm_kernels.ptx"));
const MODULE: &str = "aullm_kernels";

/// Convolution geometry as the kernels read it (`struct Geometry` in kernels.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    /// Channels, images, height, width of the channels-first input.
    pub c: i32,
    /// Images.
    pub n: i32,
    /// Input height.
    pub h: i32,
    /// Input width.
    pub w: i32,
    /// Kernel height.
    pub kh: i32,
    /// Kernel width.
    pub kw: i32,
    /// Stride (both axes).
    pub stride: i32,
    /// Zero padding of the rows.
    pub ph: i32,
    /// Zero padding of the columns.
    pub pw: i32,
    /// Output height.
    pub ho: i32,
    /// Output width.
    pub wo: i32,
}

// SAFETY: a plain #[repr(C)] struct of i32, laid out as the kernel's parameter.
unsafe impl DeviceRepr for ConvGeometry {}

/// A plane's height and width (`struct Plane` in kernels.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    /// Rows.
    pub h: i32,
    /// Columns.
    pub w: i32,
}

// SAFETY: as above.
unsafe impl DeviceRepr for Plane {}

/// Runs `kernel(src, dst, total, params)` with one thread per element of a fresh f32 output of
/// `total` elements; `src` is the contiguous f32 input `s`/`l`.
pub fn launch<P: DeviceRepr>(
    kernel: &str,
    s: &CudaStorage,
    l: &Layout,
    total: usize,
    params: P,
) -> Result<CudaStorage> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("{kernel} needs a contiguous input");
    };
    let Ok(n) = u32::try_from(total) else {
        bail!("{kernel}: {total} elements are more than one launch covers");
    };
    let dev = s.device.clone();
    let src = s.as_cuda_slice::<f32>()?.slice(a..b);
    // SAFETY: every element is written by the kernel below.
    let dst = unsafe { dev.alloc::<f32>(total)? };
    let func = dev.get_or_load_custom_func(kernel, MODULE, PTX)?;
    let total = total as u64;
    let mut builder = func.builder();
    builder.arg(&src);
    builder.arg(&dst);
    builder.arg(&total);
    builder.arg(&params);
    // SAFETY: the kernel's signature is (const float*, float*, unsigned long long, P), and it
    // reads within `src` and writes within `dst` for the geometry it is given.
    unsafe { builder.launch(LaunchConfig::for_num_elems(n)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(dst, dev))
}
