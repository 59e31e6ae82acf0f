//! Loads the shipped model (`models/default`: front-end session and reasoner with its adapter,
//! merged, packed and with its prompt prefix) three times and prints each load's seconds; for
//! the reasoner's load CPU: `RAYON_NUM_THREADS=1 /usr/bin/time target/release/examples/model_load`.

use anyhow::Result;
use std::time::Instant;

fn main() -> Result<()> {
    let cfg = aullm::config::Config::load(None, &[])?;
    let dir = std::path::Path::new("models/default");
    for _ in 0..3 {
        let t = Instant::now();
        let d = aullm::runtime::detector::Detector::load(dir, &cfg, None)?;
        println!("load {:.3} s", t.elapsed().as_secs_f64());
        drop(d);
    }
    Ok(())
}
