//! Compiles the small C shim around libjpeg(-turbo) used to decode regions of MJPEG frames, and,
//! with the `cuda` feature, aullm's CUDA kernels to PTX (nvcc, as candle's own kernels need).

fn main() {
    println!("cargo:rerun-if-changed=src/frame/c/jpeg_region.c");
    let mut b = cc::Build::new();
    b.file("src/frame/c/jpeg_region.c")
        .opt_level(2)
        .warnings(true);
    // Under cargo fuzz (`--cfg fuzzing`) the shim is instrumented like the Rust code around it:
    // AddressSanitizer and libFuzzer's coverage counters, so that fuzzing sees inside it.
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        b.compiler("clang")
            .flag("-fsanitize=address")
            .flag("-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp");
    }
    b.compile("aullm_jpeg_region");
    println!("cargo:rustc-link-lib=jpeg");
    compile_imgio_shim();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_ptx();
    }
}

/// `src/imgio/shim.cpp` → `$OUT_DIR/libaullm_imgio.so`, a shared object linked against OpenCV's
/// image codecs that the executable embeds and loads on first use (`imgio`), so that the codecs'
/// ~115 libraries are not loaded by every aullm process.
fn compile_imgio_shim() {
    let src = "src/imgio/shim.cpp";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=OPENCV_INCLUDE_PATHS");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("libaullm_imgio.so");
    let include =
        std::env::var("OPENCV_INCLUDE_PATHS").unwrap_or_else(|_| "/usr/include/opencv4".into());
    let mut cmd = cc::Build::new().cpp(true).get_compiler().to_command();
    cmd.args(["-shared", "-fPIC", "-O2", "-std=c++17", "-Wall"]);
    for dir in include.split(',').filter(|d| !d.is_empty()) {
        cmd.arg(format!("-I{dir}"));
    }
    cmd.arg(src)
        .arg("-o")
        .arg(&out)
        .args(["-lopencv_imgcodecs", "-lopencv_core"]);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler for {src}: {e}"));
    assert!(status.success(), "the C++ compiler failed on {src}");
}

/// `src/graph/cuda/kernels.cu` → `$OUT_DIR/aullm_kernels.ptx` for `CUDA_COMPUTE_CAP` (default 90,
/// the H100/H200), with the nvcc that `NVCC` names or the one on PATH.
fn compile_ptx() {
    let src = "src/graph/cuda/kernels.cu";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("aullm_kernels.ptx");
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=compute_{cap}"), src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("the cuda feature needs nvcc ({nvcc}): {e}"));
    assert!(status.success(), "{nvcc} failed on {src}");
}
