//! Field rules for what the ERP and the payment service send, with the HTTP API's limits:
//! every text we store is at most 500 characters and has no NUL (PostgreSQL refuses NUL in
//! `text` and JSONB), required texts are not blank, addresses pass the API's own
//! [`check_address`], amounts fit the database's `numeric(14, 2)`, timestamps lie in
//! 2000-01-01 .. 2100-01-01 UTC. A failure names the field as the message spells it.

use std::fmt;

use chrono::{DateTime, Utc};
use orderbus_contracts::Decimal;

use crate::http::types::check_address;
use crate::store::Address;

/// The longest text stored from a message (the HTTP API's limit).
pub const TEXT_MAX_CHARS: usize = 500;
/// The longest invoice URL stored.
pub const URL_MAX_CHARS: usize = 2048;
/// Earliest accepted event time: 2000-01-01T00:00:00Z.
pub const EARLIEST_UNIX_TIME: i64 = 946_684_800;
/// Latest accepted event time (exclusive): 2100-01-01T00:00:00Z.
pub const LATEST_UNIX_TIME: i64 = 4_102_444_800;
/// The largest amount a `numeric(14, 2)` column holds, in cents.
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999_999_999;

/// A field that breaks its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub type Checked<T = ()> = Result<T, Invalid>;

fn invalid<T>(field: &str, message: impl Into<String>) -> Checked<T> {
    Err(Invalid {
        field: field.to_owned(),
        message: message.into(),
    })
}

/// At most [`TEXT_MAX_CHARS`], no NUL; may be empty.
pub fn text(field: &str, v: &str) -> Checked {
    if v.contains('\0') {
        return invalid(field, "must not contain NUL");
    }
    if v.chars().count() > TEXT_MAX_CHARS {
        return invalid(
            field,
            format!("must be at most {TEXT_MAX_CHARS} characters"),
        );
    }
    Ok(())
}

/// [`text`], not blank.
pub fn required_text(field: &str, v: &str) -> Checked {
    if v.trim().is_empty() {
        return invalid(field, "must not be empty");
    }
    text(field, v)
}

/// A waybill number as the HTTP API accepts one: letters, digits, spaces and `-`.
pub fn waybill_number(field: &str, v: &str) -> Checked {
    required_text(field, v)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
    {
        return invalid(field, "letters, digits, spaces and '-' only");
    }
    Ok(())
}

pub fn positive(field: &str, v: i64) -> Checked {
    if v <= 0 {
        return invalid(field, "must be a positive integer");
    }
    Ok(())
}

pub fn not_negative(field: &str, v: i64) -> Checked {
    if v < 0 {
        return invalid(field, "must not be negative");
    }
    Ok(())
}

/// An `http`/`https` URL with a host, no whitespace or control characters.
pub fn web_url(field: &str, v: &str) -> Checked {
    if v.chars().count() > URL_MAX_CHARS {
        return invalid(field, format!("must be at most {URL_MAX_CHARS} characters"));
    }
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let Some(rest) = rest else {
        return invalid(field, "must be an http(s) URL");
    };
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid(field, "must not contain whitespace or control characters");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return invalid(field, "must name a host");
    }
    Ok(())
}

/// Unix seconds within [`EARLIEST_UNIX_TIME`] .. [`LATEST_UNIX_TIME`].
pub fn unix_time(field: &str, secs: i64) -> Checked<DateTime<Utc>> {
    if !(EARLIEST_UNIX_TIME..LATEST_UNIX_TIME).contains(&secs) {
        return invalid(
            field,
            format!("{secs} is not a time between 2000-01-01 and 2100-01-01 (Unix seconds)"),
        );
    }
    DateTime::from_timestamp(secs, 0).map_or_else(|| invalid(field, "not a time"), Ok)
}

/// A non-negative amount with at most two decimals that the database can hold, in cents.
pub fn amount_cents(field: &str, v: &Decimal) -> Checked<i64> {
    match v.to_cents() {
        Some(c) if (0..=MAX_AMOUNT_CENTS).contains(&c) => Ok(c),
        _ => invalid(
            field,
            format!("{v} is not a non-negative amount with at most two decimals below 10^12"),
        ),
    }
}

/// The HTTP API's address rules, plus no NUL in any part.
pub fn address(prefix: &str, a: &Address) -> Checked {
    for (name, v) in [
        ("user_name", &a.user_name),
        ("mobile", &a.mobile),
        ("phone", &a.phone),
        ("province", &a.province),
        ("city", &a.city),
        ("district", &a.district),
        ("address", &a.address),
        ("email", &a.email),
    ] {
        if v.contains('\0') {
            return invalid(&format!("{prefix}.{name}"), "must not contain NUL");
        }
    }
    check_address(prefix, a).map_err(|(field, message)| Invalid { field, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert!(web_url("pdfUrl", "https://inv/blue.pdf").is_ok());
        assert!(web_url("pdfUrl", "").is_err());
        assert!(web_url("pdfUrl", "javascript:alert(1)").is_err());
        assert!(web_url("pdfUrl", "https:///x").is_err());
        assert!(web_url("pdfUrl", "https://a b").is_err());
        assert!(required_text("uniqueKey", "").is_err());
        assert!(required_text("uniqueKey", "  ").is_err());
        assert!(text("payment_gateway", &"x".repeat(1_000_000)).is_err());
        assert!(text("accept_remark", "a\0b").is_err());
        assert!(unix_time("createTime", 1_483_387_378).is_ok());
        assert_eq!(
            unix_time("createTime", 1_000_000_000_000_000).map_err(|e| e.field),
            Err("createTime".to_owned())
        );
        assert!(unix_time("createTime", -1_000_000_000_000).is_err());
        assert!(amount_cents("a", &Decimal::from_cents(-1)).is_err());
        assert_eq!(amount_cents("a", &Decimal::from_cents(10000)), Ok(10000));
    }

    proptest! {
        /// Every accepted time converts, and only times inside the range are accepted.
        #[test]
        fn times_outside_the_range_are_refused(secs in any::<i64>()) {
            let inside = (EARLIEST_UNIX_TIME..LATEST_UNIX_TIME).contains(&secs);
            prop_assert_eq!(unix_time("t", secs).is_ok(), inside);
        }

        /// No accepted text holds NUL or exceeds the limit.
        #[test]
        fn accepted_texts_are_storable(v in "(\\PC|\\x00){0,600}") {
            if text("f", &v).is_ok() {
                prop_assert!(!v.contains('\0'));
                prop_assert!(v.chars().count() <= TEXT_MAX_CHARS);
            }
        }

        /// Only http(s) URLs with a host are accepted, whatever else is sent.
        #[test]
        fn only_web_urls_are_accepted(v in "\\PC{0,40}") {
            if web_url("pdfUrl", &v).is_ok() {
                prop_assert!(v.starts_with("https://") || v.starts_with("http://"));
                prop_assert!(!v.chars().any(char::is_whitespace));
            }
        }
    }
}
