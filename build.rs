//! Compiles the small C shim around libjpeg(-turbo) used to decode regions of MJPEG frames.

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
}
