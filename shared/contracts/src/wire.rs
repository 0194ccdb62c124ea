//! Field encodings the MQ spec uses inconsistently between messages.
//!
//! The ERP sends the same logical field as a JSON number in one message and as a numeric string in
//! another (`order_code` is `100000` in `order.erpstatus` but `"308545172"` in
//! `order.createRefundOrder`). The rule for every such field: accept both forms on input, emit the
//! form the spec shows for that message. Each module here is one `#[serde(with = ...)]` encoding.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses an integer given as a JSON number or as a string of ASCII digits (optional sign).
struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string of digits")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Err(E::invalid_type(de::Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        parse_int_str(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

fn parse_int_str(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn int_or_numeric_string(description: &str) -> Schema {
    json_schema!({
        "description": description,
        "anyOf": [
            { "type": "integer" },
            { "type": "string", "pattern": "^-?[0-9]+$" }
        ]
    })
}

/// An integer the spec sends as a JSON number; a numeric string is accepted too.
pub mod int {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(IntVisitor)
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        int_or_numeric_string("Integer; sent as a JSON number (a numeric string is accepted).")
    }
}

/// An integer the spec sends as a string (`"3342109"`); a JSON number is accepted too.
pub mod int_as_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(IntVisitor)
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        int_or_numeric_string("Integer; sent as a string of digits (a JSON number is accepted).")
    }
}

/// An optional integer sent as a JSON number; absent when `None`.
pub mod opt_int {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_i64(*v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::int")] i64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Integer or null; sent as a JSON number (a numeric string is accepted).",
            "anyOf": [
                { "type": "integer" },
                { "type": "string", "pattern": "^-?[0-9]+$" },
                { "type": "null" }
            ]
        })
    }
}

/// A decimal amount kept exactly as written (`"88.00"` stays `"88.00"`).
///
/// Money is never a float here: the value is validated as a plain decimal and kept as its text, so
/// re-encoding reproduces the ERP's bytes and a database can store it as `numeric`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// Parses `"88.00"`, `"334"`, `"-1.5"`; refuses anything else (exponents, spaces, empty).
    pub fn parse(text: &str) -> Option<Decimal> {
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (whole, frac) = match unsigned.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (unsigned, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && frac.is_none_or(digits) {
            Some(Decimal(text.to_owned()))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The amount in hundredths (cents), if it has at most two decimals and fits.
    pub fn to_cents(&self) -> Option<i64> {
        let negative = self.0.starts_with('-');
        let unsigned = self.0.trim_start_matches('-');
        let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if frac.len() > 2 {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let frac: i64 = format!("{frac:0<2}").parse().ok()?;
        let cents = whole.checked_mul(100)?.checked_add(frac)?;
        Some(if negative { -cents } else { cents })
    }

    /// Formats cents as a two-decimal amount (`18800` → `"188.00"`).
    pub fn from_cents(cents: i64) -> Decimal {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        Decimal(format!("{sign}{}.{:02}", abs / 100, abs % 100))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal amount as a string (\"88.00\") or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        Decimal::parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        // serde_json renders finite floats without exponent for ordinary amounts (`99.5`).
        Decimal::parse(&v.to_string())
            .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
    }
}

/// Decimal sent as a string (`"last_price": "88.00"`); the default encoding of [`Decimal`].
impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }
}

impl schemars::JsonSchema for Decimal {
    fn schema_name() -> Cow<'static, str> {
        "Decimal".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Decimal amount; sent as a string such as \"88.00\" (a JSON number is accepted).",
            "anyOf": [
                { "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$" },
                { "type": "number" }
            ]
        })
    }
}

/// An optional decimal the spec sends as a JSON number (`"real_returned_amount": 100`).
pub mod opt_decimal_as_number {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(d) => match serde_json::Number::from_string_unchecked_checked(d.as_str()) {
                Some(n) => n.serialize(s),
                None => s.serialize_str(d.as_str()),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Option::<Decimal>::deserialize(d)
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Decimal amount or null; sent as a JSON number (a numeric string is accepted).",
            "anyOf": [
                { "type": "number" },
                { "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$" },
                { "type": "null" }
            ]
        })
    }
}

/// Turns a validated decimal text into a JSON number without going through a lossy float when
/// the text is an integer.
trait NumberFromDecimal {
    fn from_string_unchecked_checked(text: &str) -> Option<serde_json::Number>;
}

impl NumberFromDecimal for serde_json::Number {
    fn from_string_unchecked_checked(text: &str) -> Option<serde_json::Number> {
        if let Ok(i) = text.parse::<i64>() {
            return Some(i.into());
        }
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parses_plain_amounts_only() {
        for ok in ["0", "88.00", "334", "-1.5"] {
            assert_eq!(Decimal::parse(ok).map(|d| d.0), Some(ok.to_owned()));
        }
        for bad in ["", ".5", "5.", "1e3", " 1", "1,00", "abc", "--1"] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn decimal_cents_round_trip() {
        assert_eq!(
            Decimal::parse("88.00").and_then(|d| d.to_cents()),
            Some(8800)
        );
        assert_eq!(
            Decimal::parse("334").and_then(|d| d.to_cents()),
            Some(33400)
        );
        assert_eq!(Decimal::parse("0.5").and_then(|d| d.to_cents()), Some(50));
        assert_eq!(Decimal::parse("1.234").and_then(|d| d.to_cents()), None);
        assert_eq!(Decimal::from_cents(18800).as_str(), "188.00");
        assert_eq!(Decimal::from_cents(-5).as_str(), "-0.05");
    }

    #[test]
    fn int_strings_must_be_digits() {
        assert_eq!(parse_int_str("308545172"), Some(308545172));
        assert_eq!(parse_int_str("-3"), Some(-3));
        for bad in ["", "-", "12a", " 1", "1.0", "99999999999999999999"] {
            assert_eq!(parse_int_str(bad), None, "{bad:?}");
        }
    }
}
