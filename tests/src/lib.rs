//! End-to-end tests live in `tests/tests/`; this library holds what they share with the
//! deploy generator.

use std::path::Path;

use anyhow::{Context, Result};
use orderbus_runtime::TopologyOverrides;

/// The settings of a service's ConfigMap (`<deploy_dir>/base/<service>/configmap.yaml`) that
/// shape its queues (`ORDERBUS_CONSUMER_SHARDS`, `ORDERBUS_CONSUMER_PARTITIONS`), so that the
/// generated topology and the tests run exactly what the pods declare. None of them (or no
/// ConfigMap): the defaults.
pub fn configmap_topology(deploy_dir: &Path, service: &str) -> Result<TopologyOverrides> {
    let path = deploy_dir.join("base").join(service).join("configmap.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TopologyOverrides::default())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // The file may hold more than one document: the settings are the ConfigMap's.
    let mut data = serde_yaml::Value::Null;
    for doc in text.split("\n---") {
        let value: serde_yaml::Value =
            serde_yaml::from_str(doc).with_context(|| format!("parsing {}", path.display()))?;
        if value["kind"].as_str() == Some("ConfigMap") {
            data = value["data"].clone();
            break;
        }
    }
    let number = |key: &str| -> Result<Option<usize>> {
        data[key]
            .as_str()
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{key} = {v:?} in {}", path.display()))
            })
            .transpose()
    };
    Ok(TopologyOverrides {
        shards: number("ORDERBUS_CONSUMER_SHARDS")?,
        partitions: number("ORDERBUS_CONSUMER_PARTITIONS")?,
        ..TopologyOverrides::default()
    })
}

/// The repository's `deploy/` folder.
pub fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("deploy")
}
