//! Lightweight 3D CNN backbone from (2+1)D blocks, yielding F_mid (local, 1/4 resolution) and F_high
//! (semantic, 1/16 resolution).
//!
//! candle has no Conv3d, so each block is a spatial 1xkxk convolution (a 2D convolution of every frame)
//! followed by a temporal kx1x1 convolution (a kt x 1 convolution over [T, H·W]), both computed
//! channels-first by [`conv2d_cf`]. ONNX Conv expresses both exactly with 3D kernels ([Co, Ci, 1, k, k]
//! and [Co, Co, kt, 1, 1]), so export stays exact.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder, init};

use super::conv::conv2d_cf;
use crate::graph::config::FrontendConfig;

/// One (2+1)D block: spatial conv (stride `stride`, padding k/2), ReLU, temporal conv ("same" padding), ReLU.
#[derive(Debug, Clone)]
pub struct Conv2Plus1d {
    spatial_w: Tensor,
    spatial_b: Tensor,
    temporal_w: Tensor,
    temporal_b: Tensor,
    stride: usize,
}

impl Conv2Plus1d {
    /// Creates the block's variables under `vb` (`spatial.weight` [Co, Ci, k, k], `temporal.weight` [Co, Co, kt, 1]).
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        kt: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let s = vb.pp("spatial");
        let t = vb.pp("temporal");
        Ok(Self {
            spatial_w: s.get_with_hints(
                (c_out, c_in, k, k),
                "weight",
                init::DEFAULT_KAIMING_NORMAL,
            )?,
            spatial_b: s.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            temporal_w: t.get_with_hints(
                (c_out, c_out, kt, 1),
                "weight",
                init::DEFAULT_KAIMING_NORMAL,
            )?,
            temporal_b: t.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            stride,
        })
    }

    /// Spatial 1xkxk convolution of every frame of a channels-first [C, B, T, H, W] tensor.
    pub fn spatial(&self, x: &Tensor) -> Result<Tensor> {
        let (c, b, t, h, w) = x.dims5()?;
        let k = self.spatial_w.dim(D::Minus1)?;
        let y = conv2d_cf(
            &x.reshape((c, b * t, h, w))?,
            &self.spatial_w,
            self.stride,
            (k / 2, k / 2),
        )?;
        let (co, _, ho, wo) = y.dims4()?;
        y.broadcast_add(&self.spatial_b.reshape(((), 1, 1, 1))?)?
            .reshape((co, b, t, ho, wo))
    }

    /// Temporal kx1x1 convolution with zero "same" padding over time of a channels-first
    /// [C, B, T, H, W] tensor: a kt x 1 convolution of the [T, H·W] plane of every clip.
    pub fn temporal(&self, x: &Tensor) -> Result<Tensor> {
        let (c, b, t, h, w) = x.dims5()?;
        let kt = self.temporal_w.dim(2)?;
        let y = conv2d_cf(
            &x.reshape((c, b, t, h * w))?,
            &self.temporal_w,
            1,
            (kt / 2, 0),
        )?;
        y.broadcast_add(&self.temporal_b.reshape(((), 1, 1, 1))?)?
            .reshape(((), b, t, h, w))
    }

    /// The spatial and temporal kernels (for export).
    pub fn weights(&self) -> [&Tensor; 4] {
        [
            &self.spatial_w,
            &self.spatial_b,
            &self.temporal_w,
            &self.temporal_b,
        ]
    }

    /// Spatial stride.
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl Module for Conv2Plus1d {
    /// Channels-first [C, B, T, H, W] → [Co, B, T, H/stride, W/stride].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.spatial(x)?.relu()?;
        self.temporal(&y)?.relu()
    }
}

/// The backbone: four stride-2 (2+1)D stages; stage 2 gives F_mid, stage 4 gives F_high.
#[derive(Debug, Clone)]
pub struct Backbone {
    stages: Vec<Conv2Plus1d>,
}

impl Backbone {
    /// Creates the stages under `vb` (`stage1` ... `stage4`).
    pub fn new(cfg: &FrontendConfig, vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::with_capacity(4);
        let mut c_in = cfg.input.channels();
        for (i, &c_out) in cfg.channels.iter().enumerate() {
            stages.push(Conv2Plus1d::new(
                c_in,
                c_out,
                3,
                cfg.temporal_kernel,
                2,
                vb.pp(format!("stage{}", i + 1)),
            )?);
            c_in = c_out;
        }
        Ok(Self { stages })
    }

    /// `clip` [B, C, T, H, W] (C = `frontend.input`'s channels) → channels-first (F_mid
    /// [C2, B, T, H/4, W/4], F_high [C4, B, T, H/16, W/16]).
    ///
    /// Channels-first makes every convolution one plain matrix product (see [`conv2d_cf`]).
    pub fn forward(&self, clip: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.stages[0].forward(&clip.permute((1, 0, 2, 3, 4))?.contiguous()?)?;
        let f_mid = self.stages[1].forward(&x)?;
        let x = self.stages[2].forward(&f_mid)?;
        let f_high = self.stages[3].forward(&x)?;
        Ok((f_mid, f_high))
    }

    /// The stages, in order (for export).
    pub fn stages(&self) -> &[Conv2Plus1d] {
        &self.stages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn temporal_conv_matches_a_direct_sum() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let block = Conv2Plus1d::new(1, 1, 1, 3, 1, vb).unwrap();
        // Kernel [1, 2, 3] over time, zero bias: y_t = x_{t-1} + 2 x_t + 3 x_{t+1} with zero padding.
        vm.data()
            .lock()
            .unwrap()
            .get("temporal.weight")
            .unwrap()
            .set(
                &Tensor::new(&[1f32, 2., 3.], &dev)
                    .unwrap()
                    .reshape((1, 1, 3, 1))
                    .unwrap(),
            )
            .unwrap();
        let x = Tensor::new(&[1f32, 10., 100., 1000.], &dev)
            .unwrap()
            .reshape((1, 1, 4, 1, 1))
            .unwrap();
        let y: Vec<f32> = block
            .temporal(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![32., 321., 3210., 2100.]);
    }
}
