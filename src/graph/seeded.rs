//! A variable store whose fresh variables are drawn from a seed (per variable name), so a training
//! seed fixes the whole initialisation; candle's own CPU generator cannot be seeded.

use crate::rng::Rng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarMap};

/// A [`VarMap`] that initialises missing variables deterministically from `seed` and their name.
#[derive(Clone)]
pub struct SeededVarMap {
    /// The variables (shared with the caller's map).
    pub map: VarMap,
    /// The seed.
    pub seed: u64,
}

/// FNV-1a of a variable name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The values `init` draws for `shape`, from `rng`.
fn draw(init: Init, shape: &Shape, rng: &mut Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let normal = |rng: &mut Rng, mean: f64, std: f64| (mean + std * rng.gaussian()) as f32;
    let uniform = |rng: &mut Rng, lo: f64, up: f64| (lo + (up - lo) * rng.uniform()) as f32;
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => (0..n).map(|_| normal(rng, mean, stdev)).collect(),
        Init::Uniform { lo, up } => (0..n).map(|_| uniform(rng, lo, up)).collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..n).map(|_| normal(rng, 0.0, std)).collect(),
                NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    (0..n).map(|_| uniform(rng, -b, b)).collect()
                }
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.map.data().lock().expect("variable map lock poisoned");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = Rng::new(self.seed ^ name_hash(name));
        let t = Tensor::from_vec(draw(h, &s, &mut rng), s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("variable {name} must be created with a shape and an initialisation")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarBuilder;

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let make = |seed| {
            let map = VarMap::new();
            let vb = VarBuilder::from_backend(
                Box::new(SeededVarMap {
                    map: map.clone(),
                    seed,
                }),
                DType::F32,
                Device::Cpu,
            );
            let w = vb
                .get_with_hints((4, 3), "w", candle_nn::init::DEFAULT_KAIMING_NORMAL)
                .unwrap();
            let b = vb.get_with_hints(4, "b", Init::Const(0.5)).unwrap();
            (
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.to_vec1::<f32>().unwrap(),
                map,
            )
        };
        let (w1, b1, m1) = make(7);
        let (w2, _, _) = make(7);
        let (w3, _, _) = make(8);
        assert_eq!(w1, w2);
        assert_ne!(w1, w3);
        assert_eq!(b1, vec![0.5; 4]);
        assert_eq!(m1.all_vars().len(), 2);
    }
}
