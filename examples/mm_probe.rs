use candle_core::{DType, Device, Tensor};
use std::time::Instant;
fn t<F: FnMut()>(name: &str, mut f: F) {
    for _ in 0..3 { f(); }
    let mut v = Vec::new();
    for _ in 0..30 { let s = Instant::now(); f(); v.push(s.elapsed().as_secs_f64()*1e6); }
    v.sort_by(f64::total_cmp);
    println!("{name}: median {:.1} us", v[v.len()/2]);
}
fn main() {
    let dev = Device::Cpu;
    for &(m, k, n) in &[(9usize, 576usize, 1536usize), (9, 1536, 576), (9, 576, 576), (144, 576, 1536), (9, 1536, 8960)] {
        let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        t(&format!("m{m} k{k} n{n} x@W.t"), || { x.matmul(&w.t().unwrap()).unwrap(); });
        t(&format!("m{m} k{k} n{n} x@Wt contiguous"), || { x.matmul(&wt).unwrap(); });
        t(&format!("m{m} k{k} n{n} rows_matmul"), || { aullm::graph::reasoner::rows_matmul::try_rows_matmul(&x, &w).unwrap(); });
        let wh = w.to_dtype(DType::F16).unwrap();
        let xh = x.to_dtype(DType::F16).unwrap();
        t(&format!("m{m} k{k} n{n} f16 x@W.t"), || { xh.matmul(&wh.t().unwrap()).unwrap(); });
    }
    let x = Tensor::randn(0f32, 1., (9, 576), &dev).unwrap();
    let w = Tensor::ones(576, DType::F32, &dev).unwrap();
    t("rms_norm 9x576", || { candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap(); });
    t("add 9x576", || { (&x + &x).unwrap(); });
}
#[allow(dead_code)]
fn unused() {}
