//! Field rules for the text fields of every message, applied while decoding.
//!
//! Each rule is a `#[serde(with = ...)]` module that checks the string as it is deserialized (so
//! the error carries the field's JSON path) and a `schema` function that states the same limits
//! in the generated JSON Schema. The rules are the same whichever party publishes the message:
//! the ERP's messages are checked exactly as the storefront's HTTP input is.
//!
//! | rule          | empty     | at most          | other                                        |
//! |---------------|-----------|------------------|----------------------------------------------|
//! | [`required`]  | refused   | 500 characters   | blank (only whitespace) is refused too        |
//! | [`optional`]  | allowed   | 500 characters   |                                              |
//! | [`digits`]    | allowed   | 18 digits        | ASCII digits only                            |
//! | [`code`]      | refused   | 18 digits        | ASCII digits only                            |
//! | [`waybill`]   | refused   | 100 characters   | letters, digits, spaces and `-`; not blank   |
//! | [`url`]       | refused   | 2048 characters  | `http://`/`https://` URL, or `host.name/path` |
//!
//! 500 is the storefront's HTTP limit for every text field, so a body the HTTP API accepts is
//! always a valid message. Strings are measured in Unicode scalar values, as JSON Schema's
//! `maxLength` does. U+0000 is refused in every text field a rule reads (an ignored, unknown
//! field may carry it: the message is not refused for what nobody reads).

use schemars::{json_schema, Schema, SchemaGenerator};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Longest free text: names, address parts, remarks, reasons, messages.
pub const TEXT_MAX: usize = 500;
/// Longest numeric code sent as a string (zip and area codes, refund mode).
pub const DIGITS_MAX: usize = 18;
/// Longest carrier waybill number.
pub const WAYBILL_MAX: usize = 100;
/// Longest URL.
pub const URL_MAX: usize = 2048;

/// JSON Schema pattern for "contains something other than whitespace".
const NOT_BLANK: &str = "\\S";

fn too_long(max: usize, v: &str) -> Option<String> {
    (v.chars().count() > max).then(|| format!("must be at most {max} characters"))
}

fn blank(v: &str) -> Option<String> {
    v.chars()
        .all(char::is_whitespace)
        .then(|| "must not be empty".to_owned())
}

fn check_required(v: &str) -> Option<String> {
    blank(v).or_else(|| too_long(TEXT_MAX, v))
}

fn check_optional(v: &str) -> Option<String> {
    too_long(TEXT_MAX, v)
}

fn check_digits(v: &str) -> Option<String> {
    (v.len() > DIGITS_MAX || !v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("must be digits only (at most {DIGITS_MAX})"))
}

fn check_code(v: &str) -> Option<String> {
    if v.is_empty() {
        return Some("must not be empty".to_owned());
    }
    check_digits(v)
}

fn check_waybill(v: &str) -> Option<String> {
    if let Some(e) = blank(v).or_else(|| too_long(WAYBILL_MAX, v)) {
        return Some(e);
    }
    (!v.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' '))
    .then(|| "letters, digits, spaces and '-' only".to_owned())
}

/// An absolute `http`/`https` URL, or the scheme-less `host/path` form the ERP's invoice sample
/// uses (`www.baidu.com/url`), whose host name then needs at least one dot. Any other scheme
/// (`javascript:`, `data:`, `ftp:`), a relative path and whitespace are refused.
fn check_url(v: &str) -> Option<String> {
    if let Some(e) = too_long(URL_MAX, v) {
        return Some(e);
    }
    let refuse = || {
        Some("must be an absolute http or https URL (or host/path), e.g. \"https://example.com/invoice.pdf\"".to_owned())
    };
    let lower = v.to_ascii_lowercase();
    let with_scheme = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let rest = with_scheme.unwrap_or(&lower);
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(host_end);
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // Without a scheme only a dotted host name tells `host/path` from a relative path.
    let host_ok = (with_scheme.is_some() || host.contains('.')) && host.split('.').all(label_ok);
    let tail_ok = tail.bytes().all(|b| b.is_ascii_graphic());
    if host_ok && tail_ok {
        None
    } else {
        refuse()
    }
}

/// The JSON Schema pattern equivalent to `check_url` (lengths are in `maxLength`).
const URL_PATTERN: &str = concat!(
    "^(?:[Hh][Tt][Tt][Pp][Ss]?://",
    "(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)*",
    "|(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+)",
    "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
    "(?::[0-9]+)?(?:[/?#][!-~]*)?$"
);

fn deserialize_checked<'de, D: Deserializer<'de>>(
    d: D,
    check: fn(&str) -> Option<String>,
) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.contains('\0') {
        return Err(D::Error::custom("string contains U+0000"));
    }
    match check(&v) {
        Some(reason) => Err(D::Error::custom(reason)),
        None => Ok(v),
    }
}

macro_rules! text_rule {
    ($(#[$doc:meta])* $name:ident, $check:ident, $schema:tt) => {
        $(#[$doc])*
        pub mod $name {
            use super::*;

            pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(v)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
                deserialize_checked(d, $check)
            }

            /// `Some(reason)` when `v` breaks the rule.
            pub fn check(v: &str) -> Option<String> {
                $check(v)
            }

            pub fn schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

text_rule!(
    /// Identity or required text: not blank, at most [`TEXT_MAX`] characters.
    required, check_required, {
        "type": "string",
        "minLength": 1,
        "maxLength": TEXT_MAX,
        "pattern": NOT_BLANK
    }
);

text_rule!(
    /// Free text that may be empty: at most [`TEXT_MAX`] characters.
    optional, check_optional, {
        "type": "string",
        "maxLength": TEXT_MAX
    }
);

text_rule!(
    /// A numeric code sent as a string, possibly empty: at most [`DIGITS_MAX`] ASCII digits.
    digits, check_digits, {
        "type": "string",
        "maxLength": DIGITS_MAX,
        "pattern": "^[0-9]*$"
    }
);

text_rule!(
    /// A numeric code sent as a string that must be present: 1 to [`DIGITS_MAX`] ASCII digits.
    code, check_code, {
        "type": "string",
        "minLength": 1,
        "maxLength": DIGITS_MAX,
        "pattern": "^[0-9]+$"
    }
);

text_rule!(
    /// A carrier's waybill number: not blank, at most [`WAYBILL_MAX`] characters, letters,
    /// digits, spaces and `-`.
    waybill, check_waybill, {
        "type": "string",
        "minLength": 1,
        "maxLength": WAYBILL_MAX,
        "pattern": "^[A-Za-z0-9 -]*[A-Za-z0-9-][A-Za-z0-9 -]*$"
    }
);

text_rule!(
    /// A link the customer will open: an `http`/`https` URL or `host/path`, at most
    /// [`URL_MAX`] characters.
    url, check_url, {
        "type": "string",
        "minLength": 1,
        "maxLength": URL_MAX,
        "pattern": URL_PATTERN
    }
);

/// Optional free text (`null` or absent allowed): at most [`TEXT_MAX`] characters.
pub mod opt_optional {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        if v.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(D::Error::custom("string contains U+0000"));
        }
        match v.as_deref().and_then(check_optional) {
            Some(reason) => Err(D::Error::custom(reason)),
            None => Ok(v),
        }
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "null"],
            "maxLength": TEXT_MAX
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn required_refuses_blank_and_long() {
        assert!(check_required("").is_some());
        assert!(check_required(" \t").is_some());
        assert!(check_required("朱倩倩").is_none());
        assert!(check_required(&"字".repeat(TEXT_MAX)).is_none());
        assert!(check_required(&"字".repeat(TEXT_MAX + 1)).is_some());
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/a.pdf",
            "http://invoice.example.com:8080/x?id=1#p",
            "HTTPS://EXAMPLE.COM",
            "www.baidu.com/url",
            "http://localhost/erp-sim/invoices/1/blue.pdf",
            "http://127.0.0.1:8080/a",
        ] {
            assert_eq!(check_url(ok), None, "{ok}");
        }
        for bad in [
            "",
            "javascript:alert(1)",
            "JavaScript://example.com/%0aalert(1)",
            "data:text/html,x",
            "ftp://example.com/a",
            "/relative/path",
            "localhost/x",
            "https://",
            "https://exa mple.com",
            "https://example.com/a b",
            "https://-bad.com/",
            "u",
        ] {
            assert!(check_url(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn waybills() {
        assert_eq!(check_waybill("603596395359"), None);
        assert_eq!(check_waybill("SF-1234 5678"), None);
        assert!(check_waybill("").is_some());
        assert!(check_waybill("   ").is_some());
        assert!(check_waybill("12<script>").is_some());
    }

    proptest! {
        /// The JSON Schema pattern accepts exactly what `check_url` accepts.
        #[test]
        fn url_pattern_agrees_with_the_check(v in "(https?://|HTTP://|javascript:|)[a-z0-9.:/?#-]{0,20}") {
            let schema = serde_json::json!({ "type": "string", "pattern": URL_PATTERN, "maxLength": URL_MAX, "minLength": 1 });
            let validator = jsonschema::validator_for(&schema).unwrap();
            prop_assert_eq!(validator.is_valid(&serde_json::Value::from(v.clone())), check_url(&v).is_none(), "{}", v);
        }

        #[test]
        fn waybill_pattern_agrees_with_the_check(v in "[A-Za-z0-9 \\-_<]{0,8}") {
            let schema = waybill::schema(&mut SchemaGenerator::default()).to_value();
            let validator = jsonschema::validator_for(&schema).unwrap();
            prop_assert_eq!(validator.is_valid(&serde_json::Value::from(v.clone())), check_waybill(&v).is_none(), "{:?}", v);
        }
    }
}
