//! Compiles the small C shim around libjpeg(-turbo) used to decode regions of MJPEG frames.

fn main() {
    println!("cargo:rerun-if-changed=src/frame/c/jpeg_region.c");
    cc::Build::new()
        .file("src/frame/c/jpeg_region.c")
        .opt_level(2)
        .warnings(true)
        .compile("aullm_jpeg_region");
    println!("cargo:rustc-link-lib=jpeg");
}
