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

/// Most digits of an integer sent as a string: every 18-digit number fits an `i64`, so the
/// JSON Schema pattern can state the limit exactly.
const INT_STRING_DIGITS: usize = 18;

fn parse_int_str(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty()
        || digits.len() > INT_STRING_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    v.parse().ok()
}

fn int_or_numeric_string(description: &str) -> Schema {
    json_schema!({
        "description": description,
        "anyOf": [
            { "type": "integer" },
            { "type": "string", "pattern": "^-?[0-9]{1,18}$" }
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
                { "type": "string", "pattern": "^-?[0-9]{1,18}$" },
                { "type": "null" }
            ]
        })
    }
}

/// Digits before the decimal point of an amount: `numeric(14,2)` keeps 14 digits, 2 after it.
pub const AMOUNT_WHOLE_DIGITS: usize = 12;

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

    /// Whether this is an amount the messages may carry: not negative and within PostgreSQL's
    /// `numeric(14,2)`, i.e. at most [`AMOUNT_WHOLE_DIGITS`] digits before the point and two after.
    pub fn is_amount(&self) -> bool {
        if self.0.starts_with('-') {
            return false;
        }
        let (whole, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        whole.len() <= AMOUNT_WHOLE_DIGITS && frac.len() <= 2
    }

    /// Whether the amount is greater than zero.
    pub fn is_positive(&self) -> bool {
        !self.0.starts_with('-') && self.0.bytes().any(|b| matches!(b, b'1'..=b'9'))
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

impl DecimalVisitor {
    /// Accepts `text` if it is an amount ([`Decimal::is_amount`]).
    fn amount<E: de::Error>(&self, text: String, unexpected: de::Unexpected) -> Result<Decimal, E> {
        match Decimal::parse(&text) {
            Some(d) if d.is_amount() => Ok(d),
            _ => Err(E::invalid_value(unexpected, self)),
        }
    }
}

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a non-negative amount with at most 12 digits before the point and 2 after, \
             as a string (\"88.00\") or a number",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        self.amount(v.to_owned(), de::Unexpected::Str(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        self.amount(v.to_string(), de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        self.amount(v.to_string(), de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        // serde_json renders finite floats without exponent for ordinary amounts (`99.5`); a
        // float that is not exactly a two-decimal amount (`0.30000000000000004`) is refused.
        self.amount(v.to_string(), de::Unexpected::Float(v))
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

/// The string form of an amount in JSON Schema.
const AMOUNT_PATTERN: &str = "^[0-9]{1,12}(\\.[0-9]{1,2})?$";

impl schemars::JsonSchema for Decimal {
    fn schema_name() -> Cow<'static, str> {
        "Decimal".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Non-negative amount within numeric(14,2): at most 12 digits before the point and 2 after; sent as a string such as \"88.00\" (a JSON number is accepted).",
            "anyOf": [
                { "type": "string", "pattern": AMOUNT_PATTERN },
                { "type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000_000_000u64 }
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
            "description": "Non-negative amount within numeric(14,2), or null; sent as a JSON number (a numeric string is accepted).",
            "anyOf": [
                { "type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000_000_000u64 },
                { "type": "string", "pattern": AMOUNT_PATTERN },
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
    fn amounts_fit_numeric_14_2_and_are_not_negative() {
        let amount = |t: &str| serde_json::from_str::<Decimal>(t).map(|d| d.0);
        assert_eq!(
            amount(r#""999999999999.99""#).ok().as_deref(),
            Some("999999999999.99")
        );
        assert_eq!(amount("100").ok().as_deref(), Some("100"));
        assert_eq!(amount("99.5").ok().as_deref(), Some("99.5"));
        for bad in [
            r#""1000000000000""#,
            r#""1.234""#,
            r#""-1""#,
            "-1",
            "1e20",
            "0.30000000000000004",
            r#""""#,
        ] {
            assert!(amount(bad).is_err(), "{bad} must be refused");
        }
        assert!(Decimal::parse("0.01").is_some_and(|d| d.is_positive()));
        assert!(!Decimal::parse("0.00").is_some_and(|d| d.is_positive()));
        assert!(!Decimal::parse("-1").is_some_and(|d| d.is_positive()));
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
