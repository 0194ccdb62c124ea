//! The ERP's `express_id` → SweetTracker carrier `code` table (configurable).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// `express_id=code` pairs. SweetTracker's codes are strings of two or more digits (`"04"`),
/// kept as text: `4` and `04` are different codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierTable(BTreeMap<i64, String>);

/// The default table ([inferred]): the MQ spec's only sample `express_id` is 23 (its after-sale
/// sample names it 顺丰); SweetTracker lists no SF Express, so the sample maps to `04`
/// (CJ대한통운) for the flow to run end to end. Operators configure the real table.
pub const DEFAULT_TABLE: &str = "23=04";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CarrierTableError {
    #[error("carrier table entry {0:?} is not express_id=code")]
    Entry(String),
    #[error("carrier table: express_id {0:?} is not a positive integer")]
    ExpressId(String),
    #[error("carrier table: SweetTracker code {0:?} is not two or more digits")]
    Code(String),
    #[error("carrier table: express_id {0} is listed twice")]
    Duplicate(i64),
}

impl FromStr for CarrierTable {
    type Err = CarrierTableError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut table = BTreeMap::new();
        for entry in text
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, code) = entry
                .split_once('=')
                .ok_or_else(|| CarrierTableError::Entry(entry.to_owned()))?;
            let id: i64 = id
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| CarrierTableError::ExpressId(id.trim().to_owned()))?;
            let code = code.trim();
            if code.len() < 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CarrierTableError::Code(code.to_owned()));
            }
            if table.insert(id, code.to_owned()).is_some() {
                return Err(CarrierTableError::Duplicate(id));
            }
        }
        Ok(CarrierTable(table))
    }
}

impl CarrierTable {
    /// SweetTracker's code for the ERP's `express_id`.
    pub fn code(&self, express_id: i64) -> Option<&str> {
        self.0.get(&express_id).map(String::as_str)
    }
}

impl Default for CarrierTable {
    fn default() -> Self {
        DEFAULT_TABLE
            .parse()
            .unwrap_or(CarrierTable(BTreeMap::new()))
    }
}

impl fmt::Display for CarrierTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let t: CarrierTable = "23=04, 5=05,7=123".parse().unwrap();
        assert_eq!(t.code(23), Some("04"));
        assert_eq!(t.code(7), Some("123"));
        assert_eq!(t.code(8), None);
        assert_eq!(t.to_string(), "5=05,7=123,23=04");
        assert!(matches!(
            "23".parse::<CarrierTable>(),
            Err(CarrierTableError::Entry(_))
        ));
        assert!(matches!(
            "x=04".parse::<CarrierTable>(),
            Err(CarrierTableError::ExpressId(_))
        ));
        assert!(matches!(
            "23=4".parse::<CarrierTable>(),
            Err(CarrierTableError::Code(_))
        ));
        assert!(matches!(
            "23=0a".parse::<CarrierTable>(),
            Err(CarrierTableError::Code(_))
        ));
        assert!(matches!(
            "1=04,1=05".parse::<CarrierTable>(),
            Err(CarrierTableError::Duplicate(1))
        ));
        assert_eq!(CarrierTable::default().code(23), Some("04"));
    }
}
