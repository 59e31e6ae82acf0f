//! AdamW (decoupled weight decay, Loshchilov & Hutter) with parameter groups, global gradient-norm
//! clipping, a warm-up + cosine schedule, and state that can be saved and restored exactly (candle's
//! own AdamW keeps its moments private, which would make `--resume` approximate).

use crate::config::Schedule;
use anyhow::{Context, Result, ensure};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::HashMap;

/// One set of variables sharing a learning rate.
pub struct Group {
    /// Group name (for logs).
    pub name: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Named variables.
    pub vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Group {
    /// A group with zeroed moments.
    pub fn new(name: &str, lr: f64, vars: Vec<(String, Var)>) -> Result<Group> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        let v2 = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        Ok(Group {
            name: name.to_string(),
            lr,
            vars,
            m,
            v: v2,
        })
    }
}

/// AdamW over several groups.
pub struct AdamW {
    /// The groups.
    pub groups: Vec<Group>,
    /// Optimiser steps taken.
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// β = (0.9, 0.999), ε = 1e-8, as PyTorch's defaults.
    pub fn new(groups: Vec<Group>, weight_decay: f64) -> AdamW {
        AdamW {
            groups,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// L2 norm of all gradients present in `grads`.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for g in &self.groups {
            for (_, v) in &g.vars {
                if let Some(gr) = grads.get(v.as_tensor()) {
                    sq += gr.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rates scaled by `lr_scale` (the schedule) and gradients scaled to a
    /// global norm of at most `clip` (0 = no clipping). Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr_scale: f64, clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        let gscale = if clip > 0.0 && norm > clip {
            clip / norm
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for g in &mut self.groups {
            let lr = g.lr * lr_scale;
            for (i, (_, var)) in g.vars.iter().enumerate() {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                // Gradients can carry the step's graph; the moments must not, or every step's
                // graph would stay alive through them.
                let grad = (grad.detach() * gscale)?;
                let m = ((&g.m[i] * b1)? + (&grad * (1.0 - b1))?)?.detach();
                let v = ((&g.v[i] * b2)? + (grad.sqr()? * (1.0 - b2))?)?.detach();
                let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
                let theta = var.as_tensor();
                let decayed = (theta * (1.0 - lr * self.weight_decay))?;
                var.set(&(decayed - (update * lr)?)?.detach())?;
                g.m[i] = m;
                g.v[i] = v;
            }
        }
        Ok(norm)
    }

    /// The moments as named tensors (`m.GROUP.VAR`, `v.GROUP.VAR`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for g in &self.groups {
            for (i, (name, _)) in g.vars.iter().enumerate() {
                out.push((format!("m.{}.{name}", g.name), g.m[i].clone()));
                out.push((format!("v.{}.{name}", g.name), g.v[i].clone()));
            }
        }
        out
    }

    /// Restores moments saved by `state_tensors` and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for g in &mut self.groups {
            for (i, (name, var)) in g.vars.iter().enumerate() {
                for (kind, slot) in [("m", &mut g.m[i]), ("v", &mut g.v[i])] {
                    let key = format!("{kind}.{}.{name}", g.name);
                    let t = tensors
                        .get(&key)
                        .with_context(|| format!("optimiser state has no {key}"))?;
                    ensure!(
                        t.dims() == var.dims(),
                        "optimiser state {key} has shape {:?}, the variable {:?}",
                        t.dims(),
                        var.dims()
                    );
                    *slot = t.to_device(var.device())?;
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Learning-rate multiplier at `step` (0-based) of `total`: linear warm-up, then cosine down to
/// 5 % of the peak, or constant.
pub fn schedule(step: usize, total: usize, warmup: usize, kind: Schedule) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / (warmup + 1) as f64;
    }
    if kind == Schedule::Constant || total <= warmup {
        return 1.0;
    }
    let p = ((step - warmup) as f64 / (total - warmup).max(1) as f64).min(1.0);
    0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_minimises_a_quadratic_and_restores_exactly() {
        let dev = Device::Cpu;
        let make = || {
            let x = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &dev).unwrap()).unwrap();
            let opt = AdamW::new(
                vec![Group::new("g", 0.1, vec![("x".into(), x.clone())]).unwrap()],
                0.0,
            );
            (x, opt)
        };
        let (x, mut opt) = make();
        let step = |x: &Var, opt: &mut AdamW| {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            opt.step(&g, 1.0, 0.0).unwrap();
        };
        for _ in 0..10 {
            step(&x, &mut opt);
        }
        // Snapshot, continue 20 steps; restore the snapshot into a fresh optimiser and repeat.
        let saved: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        let x_saved = x.as_tensor().copy().unwrap();
        for _ in 0..20 {
            step(&x, &mut opt);
        }
        let (x2, mut opt2) = make();
        x2.set(&x_saved).unwrap();
        opt2.load_state(&saved, 10).unwrap();
        for _ in 0..20 {
            step(&x2, &mut opt2);
        }
        let a: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        let b: Vec<f32> = x2.as_tensor().to_vec1().unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.abs() < 1.0), "{a:?}");
    }

    #[test]
    fn clipping_limits_the_update() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[100f32], &dev).unwrap()).unwrap();
        let opt = AdamW::new(
            vec![Group::new("g", 0.1, vec![("x".into(), x.clone())]).unwrap()],
            0.0,
        );
        let g = x
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!((opt.grad_norm(&g).unwrap() - 200.0).abs() < 1e-3);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!(schedule(0, 100, 10, Schedule::Cosine) < 0.2);
        assert!((schedule(10, 100, 10, Schedule::Cosine) - 1.0).abs() < 1e-9);
        assert!((schedule(99, 100, 10, Schedule::Cosine) - 0.05).abs() < 0.01);
        assert_eq!(schedule(50, 100, 10, Schedule::Constant), 1.0);
    }
}
