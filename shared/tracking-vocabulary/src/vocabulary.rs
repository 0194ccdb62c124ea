//! The vocabulary: built-in data files, operator files on top, validated at load.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::stage::Stage;
use crate::text::normalise;

/// Source names of the built-in tables.
pub const SWEETTRACKER: &str = "sweettracker";
pub const SHOPLINE: &str = "shopline";
pub const FROTEL: &str = "frotel";
/// The `state` of the MQ spec's `order.updateExpressInfo`, as the ERP sends it.
pub const EXPRESS_INFO: &str = "express_info";

/// The built-in tables, in load order (later files may refine earlier ones).
const BUILTIN: [(&str, &str); 4] = [
    (
        "data/sweettracker.toml",
        include_str!("../data/sweettracker.toml"),
    ),
    ("data/shopline.toml", include_str!("../data/shopline.toml")),
    ("data/frotel.toml", include_str!("../data/frotel.toml")),
    (
        "data/express_info.toml",
        include_str!("../data/express_info.toml"),
    ),
];

/// Every source's statuses mapped to [`Stage`]s, and the `state` code orderbus publishes on
/// `order.updateExpressInfo` for each stage.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    sources: BTreeMap<String, SourceTable>,
    express_state: BTreeMap<Stage, i64>,
}

#[derive(Debug, Clone, Default)]
struct SourceTable {
    statuses: HashMap<String, Stage>,
    carriers: HashMap<String, HashMap<String, Stage>>,
}

/// A status the vocabulary does not know: recorded and counted by the caller, never guessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {status:?} of source {source_name:?} (carrier {carrier:?}) is not in the tracking vocabulary")]
pub struct Unmapped {
    pub source_name: String,
    pub carrier: Option<String>,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    #[error("cannot read tracking vocabulary file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracking vocabulary file {file}: {source}")]
    Parse {
        file: String,
        source: toml::de::Error,
    },
    #[error("tracking vocabulary file {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("tracking vocabulary: {0}")]
    Incomplete(String),
}

/// One data file: any number of sources, optionally the `express_state` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    #[serde(default)]
    sources: BTreeMap<String, SourceFile>,
    #[serde(default)]
    express_state: BTreeMap<Stage, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    #[serde(default)]
    #[allow(dead_code)] // documentation for the reader of the file
    description: Option<String>,
    #[serde(default)]
    statuses: BTreeMap<String, Stage>,
    #[serde(default)]
    carriers: BTreeMap<String, BTreeMap<String, Stage>>,
}

impl Vocabulary {
    /// The built-in tables only.
    pub fn builtin() -> Result<Self, VocabularyError> {
        Self::load::<&Path>(&[])
    }

    /// The built-in tables, then each operator file in order: an operator entry adds a status
    /// or replaces the built-in mapping of the same (source, carrier, status).
    pub fn load<P: AsRef<Path>>(operator_files: &[P]) -> Result<Self, VocabularyError> {
        let mut vocabulary = Vocabulary {
            sources: BTreeMap::new(),
            express_state: BTreeMap::new(),
        };
        for (name, text) in BUILTIN {
            vocabulary.merge(name, text)?;
        }
        for path in operator_files {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| VocabularyError::Read {
                path: path.to_owned(),
                source,
            })?;
            vocabulary.merge(&path.display().to_string(), &text)?;
        }
        vocabulary.check_complete()?;
        Ok(vocabulary)
    }

    fn merge(&mut self, file: &str, text: &str) -> Result<(), VocabularyError> {
        let parsed: DataFile = toml::from_str(text).map_err(|source| VocabularyError::Parse {
            file: file.to_owned(),
            source,
        })?;
        let invalid = |message: String| VocabularyError::Invalid {
            file: file.to_owned(),
            message,
        };
        for (source, table) in parsed.sources {
            if source.is_empty()
                || !source
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(invalid(format!(
                    "source name {source:?} must be lower-case letters, digits and '_'"
                )));
            }
            let into = self.sources.entry(source.clone()).or_default();
            merge_statuses(&mut into.statuses, table.statuses)
                .map_err(|m| invalid(format!("[sources.{source}.statuses] {m}")))?;
            for (carrier, statuses) in table.carriers {
                let key = normalise(&carrier);
                if key.is_empty() {
                    return Err(invalid(format!(
                        "[sources.{source}.carriers] has a blank carrier code"
                    )));
                }
                let into = into.carriers.entry(key).or_default();
                merge_statuses(into, statuses)
                    .map_err(|m| invalid(format!("[sources.{source}.carriers.{carrier:?}] {m}")))?;
            }
        }
        self.express_state.extend(parsed.express_state);
        Ok(())
    }

    /// Every stage has a `state` code to publish, and reading that code back gives the stage.
    fn check_complete(&self) -> Result<(), VocabularyError> {
        for stage in Stage::ALL {
            let Some(code) = self.express_state.get(&stage) else {
                return Err(VocabularyError::Incomplete(format!(
                    "[express_state] has no code for {stage}"
                )));
            };
            match self.lookup(EXPRESS_INFO, None, &code.to_string()) {
                Ok(read_back) if read_back == stage => {}
                Ok(other) => {
                    return Err(VocabularyError::Incomplete(format!(
                        "[express_state] publishes {stage} as {code}, but [sources.express_info.statuses] reads {code} as {other}"
                    )))
                }
                Err(_) => {
                    return Err(VocabularyError::Incomplete(format!(
                        "[express_state] publishes {stage} as {code}, which [sources.express_info.statuses] does not list"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The stage of `status` from `source`, using the carrier's own table first when there is one.
    pub fn lookup(
        &self,
        source: &str,
        carrier: Option<&str>,
        status: &str,
    ) -> Result<Stage, Unmapped> {
        let key = normalise(status);
        let table = self.sources.get(source);
        let by_carrier = carrier
            .and_then(|carrier| table.and_then(|t| t.carriers.get(&normalise(carrier))))
            .and_then(|statuses| statuses.get(&key));
        by_carrier
            .or_else(|| table.and_then(|t| t.statuses.get(&key)))
            .copied()
            .ok_or_else(|| Unmapped {
                source_name: source.to_owned(),
                carrier: carrier.map(str::to_owned),
                status: status.to_owned(),
            })
    }

    /// The `state` orderbus publishes on `order.updateExpressInfo` for `stage`.
    pub fn express_state(&self, stage: Stage) -> i64 {
        // check_complete guarantees an entry for every stage.
        self.express_state.get(&stage).copied().unwrap_or(0)
    }

    /// The source names loaded (built-in and operator-added).
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }
}

fn merge_statuses(
    into: &mut HashMap<String, Stage>,
    from: BTreeMap<String, Stage>,
) -> Result<(), String> {
    // Two spellings in one file that compare equal must agree; a later file may override.
    let mut seen: HashMap<String, (String, Stage)> = HashMap::new();
    for (raw, stage) in from {
        let key = normalise(&raw);
        if key.is_empty() {
            return Err("has a blank status".to_owned());
        }
        if let Some((other, earlier)) = seen.get(&key) {
            if *earlier != stage {
                return Err(format!("{other:?} = {earlier} and {raw:?} = {stage} are the same status written two ways"));
            }
        }
        seen.insert(key.clone(), (raw, stage));
        into.insert(key, stage);
    }
    Ok(())
}
