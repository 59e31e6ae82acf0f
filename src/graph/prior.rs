//! The FACS prior graph A_prior (calibration/au_prior_graph.toml): edges with kind, weight and source.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::Path;

/// How two AUs relate in the prior.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// The AUs co-activate (positive entry).
    Synergy,
    /// The muscles antagonise each other (negative entry).
    Inhibition,
}

/// One undirected edge of the prior graph.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriorEdge {
    /// First AU number.
    pub a: crate::au::Au,
    /// Second AU number.
    pub b: crate::au::Au,
    /// Synergy or inhibition.
    pub kind: EdgeKind,
    /// Strength in (0, 1].
    pub weight: f32,
    /// Why the edge is there (FACS anatomy or dataset co-occurrence).
    pub source: String,
}

/// The prior graph file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriorGraph {
    /// File format version (1).
    pub version: u32,
    /// The edges.
    #[serde(default, rename = "edge")]
    pub edges: Vec<PriorEdge>,
}

impl PriorGraph {
    /// Reads and checks a prior graph file.
    pub fn load(path: &Path) -> Result<PriorGraph> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the AU prior graph {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("AU prior graph {}", path.display()))
    }

    /// Parses and checks prior graph TOML text.
    pub fn parse(text: &str) -> Result<PriorGraph> {
        let g: PriorGraph = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        if g.version != 1 {
            bail!("version = {}: this aullm reads version 1", g.version);
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &g.edges {
            if e.a == e.b {
                bail!(
                    "edge AU{}-AU{}: self edges are not allowed (eq. 7 adds self-loops)",
                    e.a,
                    e.b
                );
            }
            if !(e.weight > 0.0 && e.weight <= 1.0) {
                bail!(
                    "edge AU{}-AU{}: weight {} is outside (0, 1]",
                    e.a,
                    e.b,
                    e.weight
                );
            }
            if e.source.trim().is_empty() {
                bail!(
                    "edge AU{}-AU{}: source is empty (every edge needs its provenance)",
                    e.a,
                    e.b
                );
            }
            if !seen.insert((e.a.min(e.b), e.a.max(e.b))) {
                bail!("edge AU{}-AU{} is listed twice", e.a, e.b);
            }
        }
        Ok(g)
    }

    /// The symmetric N x N matrix over `aus` (row-major): +weight for synergy, -weight for inhibition;
    /// edges touching AUs outside `aus` are left out.
    pub fn matrix(&self, aus: &[crate::au::Au]) -> Vec<f32> {
        let n = aus.len();
        let mut m = vec![0f32; n * n];
        let index = |au: crate::au::Au| aus.iter().position(|&x| x == au);
        for e in &self.edges {
            if let (Some(i), Some(j)) = (index(e.a), index(e.b)) {
                let w = match e.kind {
                    EdgeKind::Synergy => e.weight,
                    EdgeKind::Inhibition => -e.weight,
                };
                m[i * n + j] = w;
                m[j * n + i] = w;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_prior_loads_and_is_symmetric_with_inhibition() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/au_prior_graph.toml");
        let g = PriorGraph::load(&path).unwrap();
        let aus = [1, 2, 4, 7, 12, 14, 15, 17];
        let m = g.matrix(&aus);
        let n = aus.len();
        for i in 0..n {
            assert_eq!(m[i * n + i], 0.0);
            for j in 0..n {
                assert_eq!(m[i * n + j], m[j * n + i]);
            }
        }
        assert_eq!(m[1], 1.0); // AU1-AU2 synergy
        assert!(m[n + 2] < 0.0); // AU2-AU4 inhibition
        assert!(m[4 * n + 6] < 0.0); // AU12-AU15 inhibition
    }

    #[test]
    fn bad_edges_are_named() {
        let base =
            "version = 1\n[[edge]]\na = 1\nb = 2\nkind = \"synergy\"\nsource = \"x\"\nweight = ";
        let err = PriorGraph::parse(&format!("{base}1.5\n")).unwrap_err();
        assert!(format!("{err:#}").contains("AU1-AU2"), "{err:#}");
        let err = PriorGraph::parse(
            &base
                .replace("synergy", "friendship")
                .replace("weight = ", "weight = 1"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("friendship"), "{err:#}");
    }
}
