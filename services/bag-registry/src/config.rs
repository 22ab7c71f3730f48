//! bag-registry's settings: the common ones, the product lines and the dispatch areas.

use serde::Deserialize;
use tracetrack_common::batch::BatchSettings;
use tracetrack_common::config::CommonSettings;
use tracetrack_domain::qr::ProductLine;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub common: CommonSettings,
    pub product_lines: Vec<ProductLineSettings>,
    pub areas: Vec<String>,
    /// LinkChild's group commit (issue 18): concurrent links share a transaction and a commit.
    pub link_batch: BatchSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductLineSettings {
    pub name: String,
    pub parent_pattern: String,
    pub capacity: i32,
    pub parent_weight_kg: f64,
    #[serde(default = "one")]
    pub child_weight_kg: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonSettings::default(),
            product_lines: ProductLine::defaults()
                .into_iter()
                .map(|l| ProductLineSettings {
                    name: l.name,
                    parent_pattern: l.parent_pattern.as_str().to_owned(),
                    capacity: l.capacity,
                    parent_weight_kg: l.parent_weight_kg,
                    child_weight_kg: l.child_weight_kg,
                })
                .collect(),
            areas: tracetrack_domain::DEFAULT_AREAS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
            link_batch: BatchSettings::default(),
        }
    }
}

impl Settings {
    pub fn lines(&self) -> anyhow::Result<Vec<ProductLine>> {
        self.product_lines
            .iter()
            .map(|l| {
                if !(1..=1000).contains(&l.capacity) {
                    anyhow::bail!("product line {}: capacity must be 1-1000", l.name);
                }
                ProductLine::new(
                    &l.name,
                    &l.parent_pattern,
                    l.capacity,
                    l.parent_weight_kg,
                    l.child_weight_kg,
                )
                .map_err(|e| anyhow::anyhow!("product line {}: bad pattern: {e}", l.name))
            })
            .collect()
    }
}

pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50052"),
    ("admin_addr", "127.0.0.1:9102"),
];
