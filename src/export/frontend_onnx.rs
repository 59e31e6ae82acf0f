//! Export of the front-end (clip → T_v, τ_au) as an ONNX model (opset 17) with the weights as initialisers.
//!
//! The (2+1)D blocks become two ONNX Conv nodes with 3D kernels ([Co, Ci, 1, k, k] then [Co, Co, kt, 1, 1]);
//! every other step maps one-to-one onto an ONNX operator. α = sigmoid(logit) of eq. 6 and the scaled prior
//! are folded into constants. Nodes and initialisers are emitted in a fixed order with no timestamps, so the
//! same weights give the same bytes.

use anyhow::{Context, Result, anyhow, bail};
use candle_core::Tensor;
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use std::collections::HashMap;
use std::path::Path;

use crate::graph::config::Ablation;
use crate::graph::efp::EfpMode;
use crate::graph::frontend::FrontendModel;

/// ONNX operator set the export targets.
pub const OPSET: i64 = 17;
pub use crate::runtime::bundle::{CONTENT, INPUT, INSTRUCTIONS};

/// Accumulates nodes and initialisers with generated, ordered names.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    next: usize,
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

impl Builder {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            inits: Vec::new(),
            next: 0,
        }
    }

    /// Adds an f32 initialiser.
    fn init(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = DataType::FLOAT as i32;
        t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(t);
        name.into()
    }

    /// Adds an i64 initialiser.
    fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = vec![data.len() as i64];
        t.data_type = DataType::INT64 as i32;
        t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(t);
        name.into()
    }

    /// Adds a node with one output (named `out`, or generated) and returns the output's name.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: Option<&str>,
    ) -> String {
        self.next += 1;
        let output = out
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}_{}", op.to_lowercase(), self.next));
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("n{}_{op}", self.next);
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.clone()];
        n.attribute = attrs;
        self.nodes.push(n);
        output
    }

    fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, Vec::new(), None)
    }
}

/// The model's variables as host data, by name.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn get(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self
            .0
            .get(name)
            .with_context(|| format!("export: variable {name:?} is missing"))?;
        let v = t
            .flatten_all()?
            .to_vec1::<f32>()
            .with_context(|| format!("export: variable {name:?}"))?;
        Ok((t.dims().to_vec(), v))
    }

    /// Adds variable `name` as an initialiser with dims `dims` (same element count).
    fn init(&self, b: &mut Builder, name: &str, dims: Option<&[usize]>) -> Result<String> {
        let (d, v) = self.get(name)?;
        let dims = dims.map(<[usize]>::to_vec).unwrap_or(d);
        if dims.iter().product::<usize>() != v.len() {
            bail!(
                "export: variable {name:?} has {} values, cannot view as {dims:?}",
                v.len()
            );
        }
        Ok(b.init(name, &dims, &v))
    }

    /// Adds the transpose of a 2D variable [out, in] as [in, out] (for MatMul).
    fn init_t(&self, b: &mut Builder, name: &str) -> Result<String> {
        let (d, v) = self.get(name)?;
        let (o, i) = match d.as_slice() {
            [o, i] => (*o, *i),
            _ => bail!("export: variable {name:?} has shape {d:?}, expected 2D"),
        };
        let mut t = vec![0f32; v.len()];
        for r in 0..o {
            for c in 0..i {
                t[c * o + r] = v[r * i + c];
            }
        }
        Ok(b.init(&format!("{name}.T"), &[i, o], &t))
    }
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(match d {
            Ok(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
            Err(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
        });
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = DataType::FLOAT as i32;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

/// (2+1)D block as two Conv + Relu pairs.
fn block(b: &mut Builder, w: &Weights, x: &str, prefix: &str) -> Result<String> {
    let (sd, _) = w.get(&format!("{prefix}.spatial.weight"))?;
    let (co, ci, k) = (sd[0], sd[1], sd[2]);
    let sw = w.init(
        b,
        &format!("{prefix}.spatial.weight"),
        Some(&[co, ci, 1, k, k]),
    )?;
    let sb = w.init(b, &format!("{prefix}.spatial.bias"), None)?;
    let p = (k / 2) as i64;
    let y = b.node(
        "Conv",
        &[x, &sw, &sb],
        vec![
            attr_ints("kernel_shape", &[1, k as i64, k as i64]),
            attr_ints("strides", &[1, 2, 2]),
            attr_ints("pads", &[0, p, p, 0, p, p]),
        ],
        None,
    );
    let y = b.op("Relu", &[&y]);
    let (td, _) = w.get(&format!("{prefix}.temporal.weight"))?;
    let kt = td[2];
    let tw = w.init(
        b,
        &format!("{prefix}.temporal.weight"),
        Some(&[td[0], td[1], kt, 1, 1]),
    )?;
    let tb = w.init(b, &format!("{prefix}.temporal.bias"), None)?;
    let pt = (kt / 2) as i64;
    let y = b.node(
        "Conv",
        &[&y, &tw, &tb],
        vec![
            attr_ints("kernel_shape", &[kt as i64, 1, 1]),
            attr_ints("strides", &[1, 1, 1]),
            attr_ints("pads", &[pt, 0, 0, pt, 0, 0]),
        ],
        None,
    );
    Ok(b.op("Relu", &[&y]))
}

fn pool(b: &mut Builder, x: &str) -> String {
    b.node(
        "ReduceMean",
        &[x],
        vec![attr_ints("axes", &[2, 3, 4]), attr_int("keepdims", 0)],
        None,
    )
}

/// The ONNX model of `model`'s front-end, serialised.
pub fn frontend_onnx_bytes(model: &FrontendModel) -> Result<Vec<u8>> {
    let spec = model.net.spec();
    let cfg = &spec.config;
    let weights = {
        let data = model
            .varmap
            .data()
            .lock()
            .map_err(|_| anyhow!("variable map lock poisoned"))?;
        Weights(
            data.iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect(),
        )
    };
    let w = &weights;
    let mut b = Builder::new();
    let mut x = INPUT.to_string();
    let mut f_mid = String::new();
    for s in 1..=4 {
        x = block(&mut b, w, &x, &format!("backbone.stage{s}"))?;
        if s == 2 {
            f_mid = x.clone();
        }
    }
    let f_high = x;
    let (c1, c2) = (cfg.channels[1], cfg.channels[3]);
    let mode = EfpMode::for_ablation(cfg.ablation);
    let pooled = match mode {
        EfpMode::Linear => {
            let a = pool(&mut b, &f_mid);
            let h = pool(&mut b, &f_high);
            b.node("Concat", &[&a, &h], vec![attr_int("axis", 1)], None)
        }
        EfpMode::HighOnly => pool(&mut b, &f_high),
        EfpMode::Fused | EfpMode::MidOnly => {
            // Eq. 1: depthwise Laplacian, scaled by γ, added to F_mid.
            let lap: Vec<f32> = (0..c1)
                .flat_map(|_| [0f32, 1., 0., 1., -4., 1., 0., 1., 0.])
                .collect();
            let lk = b.init("efp.laplacian", &[c1, 1, 1, 3, 3], &lap);
            let l = b.node(
                "Conv",
                &[&f_mid, &lk],
                vec![
                    attr_int("group", c1 as i64),
                    attr_ints("kernel_shape", &[1, 3, 3]),
                    attr_ints("pads", &[0, 1, 1, 0, 1, 1]),
                ],
                None,
            );
            let g = w.init(&mut b, "efp.gamma", None)?;
            let l = b.op("Mul", &[&l, &g]);
            let hf = b.op("Add", &[&f_mid, &l]);
            // Alignment: 4x4 average pooling, 1x1 conv to F_high's channels.
            let p = b.node(
                "AveragePool",
                &[&hf],
                vec![
                    attr_ints("kernel_shape", &[1, 4, 4]),
                    attr_ints("strides", &[1, 4, 4]),
                ],
                None,
            );
            let aw = w.init(&mut b, "efp.align.weight", Some(&[c2, c1, 1, 1, 1]))?;
            let ab = w.init(&mut b, "efp.align.bias", None)?;
            let aligned = b.node(
                "Conv",
                &[&p, &aw, &ab],
                vec![attr_ints("kernel_shape", &[1, 1, 1])],
                None,
            );
            if mode == EfpMode::Fused {
                // Eqs. 2-3.
                let conv =
                    |b: &mut Builder, x: &str, wn: &str, bias: Option<&str>| -> Result<String> {
                        let k = w.init(b, wn, Some(&[c2, c2, 1, 3, 3]))?;
                        let mut ins = vec![x.to_string(), k];
                        if let Some(bn) = bias {
                            ins.push(w.init(b, bn, None)?);
                        }
                        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                        Ok(b.node(
                            "Conv",
                            &ins,
                            vec![
                                attr_ints("kernel_shape", &[1, 3, 3]),
                                attr_ints("pads", &[0, 1, 1, 0, 1, 1]),
                            ],
                            None,
                        ))
                    };
                let a = conv(&mut b, &aligned, "efp.gate.w_g1", Some("efp.gate.b_g"))?;
                let h = conv(&mut b, &f_high, "efp.gate.w_g2", None)?;
                let s = b.op("Add", &[&a, &h]);
                let gate = b.op("Sigmoid", &[&s]);
                let d = b.op("Sub", &[&aligned, &f_high]);
                let gd = b.op("Mul", &[&gate, &d]);
                let fused = b.op("Add", &[&f_high, &gd]);
                pool(&mut b, &fused)
            } else {
                pool(&mut b, &aligned)
            }
        }
    };
    // Eq. 4.
    let pw = w.init(&mut b, "efp.proj.weight", None)?;
    let pb = w.init(&mut b, "efp.proj.bias", None)?;
    let tv = b.node(
        "Gemm",
        &[&pooled, &pw, &pb],
        vec![attr_int("transB", 1)],
        None,
    );
    let tv = b.op("Relu", &[&tv]);
    let ax1 = b.init_i64("axes_1", &[1]);
    b.node("Unsqueeze", &[&tv, &ax1], Vec::new(), Some(CONTENT));

    let (n, d, width) = (cfg.aus.len(), cfg.node_dim, cfg.width);
    let has_graph = cfg.ablation != Ablation::NoAugnn;
    if has_graph {
        let ph = pool(&mut b, &f_high);
        let nw = w.init(&mut b, "augnn.node_init.weight", None)?;
        let nb = w.init(&mut b, "augnn.node_init.bias", None)?;
        let h0 = b.node("Gemm", &[&ph, &nw, &nb], vec![attr_int("transB", 1)], None);
        let h0 = b.op("Relu", &[&h0]);
        let shape = b.init_i64("nodes_shape", &[-1, n as i64, d as i64]);
        let h0 = b.op("Reshape", &[&h0, &shape]);
        // Eq. 5.
        let (_, attn) = w.get("augnn.attn")?;
        let aq = b.init("augnn.attn.q", &[d, 1], &attn[..d]);
        let ak = b.init("augnn.attn.k", &[d, 1], &attn[d..]);
        let wq = w.init_t(&mut b, "augnn.w_q.weight")?;
        let wk = w.init_t(&mut b, "augnn.w_k.weight")?;
        let q = b.op("MatMul", &[&h0, &wq]);
        let sq = b.op("MatMul", &[&q, &aq]);
        let k = b.op("MatMul", &[&h0, &wk]);
        let sk = b.op("MatMul", &[&k, &ak]);
        let sk = b.node(
            "Transpose",
            &[&sk],
            vec![attr_ints("perm", &[0, 2, 1])],
            None,
        );
        let e = b.op("Add", &[&sq, &sk]);
        let e = b.node("LeakyRelu", &[&e], vec![attr_float("alpha", 0.2)], None);
        let dynamic = b.node("Softmax", &[&e], vec![attr_int("axis", -1)], None);
        // Eq. 6 with α folded into constants (computed as candle computes it).
        let logit = model
            .varmap
            .data()
            .lock()
            .map_err(|_| anyhow!("variable map lock poisoned"))?
            .get("augnn.alpha_logit")
            .context("export: augnn.alpha_logit missing")?
            .as_tensor()
            .clone();
        let alpha = candle_nn::ops::sigmoid(&logit)?;
        let one_minus: f32 = alpha.affine(-1.0, 1.0)?.to_vec1::<f32>()?[0];
        let prior_t = model
            .net
            .augnn()
            .context("export: graph network missing")?
            .prior();
        let prior: Vec<f32> = prior_t.broadcast_mul(&alpha)?.flatten_all()?.to_vec1()?;
        let ap = b.init("augnn.alpha_prior", &[n, n], &prior);
        let om = b.init("augnn.one_minus_alpha", &[1], &[one_minus]);
        let dyn_scaled = b.op("Mul", &[&dynamic, &om]);
        let a_hat = b.op("Add", &[&ap, &dyn_scaled]);
        // Eq. 7 normalisation: degrees from |Â + I|.
        let eye: Vec<f32> = (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect();
        let eye = b.init("augnn.identity", &[n, n], &eye);
        let a = b.op("Add", &[&a_hat, &eye]);
        let abs = b.op("Abs", &[&a]);
        let axm1 = b.init_i64("axes_m1", &[-1]);
        let deg = b.node(
            "ReduceSum",
            &[&abs, &axm1],
            vec![attr_int("keepdims", 1)],
            None,
        );
        let floor = b.init("augnn.degree_floor", &[1], &[1e-6]);
        let deg = b.op("Max", &[&deg, &floor]);
        let sq = b.op("Sqrt", &[&deg]);
        let inv = b.op("Reciprocal", &[&sq]);
        let invt = b.node(
            "Transpose",
            &[&inv],
            vec![attr_ints("perm", &[0, 2, 1])],
            None,
        );
        let an = b.op("Mul", &[&a, &inv]);
        let an = b.op("Mul", &[&an, &invt]);
        let mut h = h0;
        for l in 0..cfg.gcn_layers {
            let gw = w.init_t(&mut b, &format!("augnn.gcn{l}.weight"))?;
            let m = b.op("MatMul", &[&an, &h]);
            let m = b.op("MatMul", &[&m, &gw]);
            h = b.op("Relu", &[&m]);
        }
        let m1 = w.init_t(&mut b, "augnn.mlp1.weight")?;
        let b1 = w.init(&mut b, "augnn.mlp1.bias", None)?;
        let m2 = w.init_t(&mut b, "augnn.mlp2.weight")?;
        let b2 = w.init(&mut b, "augnn.mlp2.bias", None)?;
        let y = b.op("MatMul", &[&h, &m1]);
        let y = b.op("Add", &[&y, &b1]);
        let y = b.op("Relu", &[&y]);
        let y = b.op("MatMul", &[&y, &m2]);
        b.node("Add", &[&y, &b2], Vec::new(), Some(INSTRUCTIONS));
    }

    let mut g = GraphProto::new();
    g.name = "aullm_frontend".into();
    g.node = b.nodes;
    g.initializer = b.inits;
    let (t, s) = (cfg.frames as i64, cfg.size as i64);
    g.input = vec![value_info(
        INPUT,
        &[
            Err("batch"),
            Ok(cfg.input.channels() as i64),
            Ok(t),
            Ok(s),
            Ok(s),
        ],
    )];
    g.output = vec![value_info(
        CONTENT,
        &[Err("batch"), Ok(1), Ok(width as i64)],
    )];
    if has_graph {
        g.output.push(value_info(
            INSTRUCTIONS,
            &[Err("batch"), Ok(n as i64), Ok(width as i64)],
        ));
    }
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.producer_name = "aullm".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.doc_string = serde_json::to_string(spec).context("export: cannot serialise the spec")?;
    let mut op = OperatorSetIdProto::new();
    op.domain = String::new();
    op.version = OPSET;
    m.opset_import = vec![op];
    m.graph = Some(g).into();
    m.write_to_bytes()
        .map_err(|e| anyhow!("export: cannot encode the ONNX model: {e}"))
}

/// Writes the front-end's ONNX model to `path` (atomically).
pub fn export_frontend(model: &FrontendModel, path: &Path) -> Result<()> {
    use std::io::Write;
    let bytes = frontend_onnx_bytes(model)?;
    let mut f = crate::atomic::AtomicFile::create(path)?;
    f.write_all(&bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}
