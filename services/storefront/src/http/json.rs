//! Request-body JSON: the strict parse (duplicate keys and NUL refused) and the canonical form the
//! Idempotency-Key hash is taken over.

use std::collections::BTreeMap;

use orderbus_contracts::strict::{self, StrictError};
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a body is not acceptable JSON: the offending location (`body` or a JSON path) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub field: String,
    pub message: String,
}

/// Parses a request body with the shared strict reader: a key that appears twice in one object
/// is refused (serde keeps the last one silently, so `{"uid":1,…,"uid":999}` would act for
/// 999), and so is U+0000 in any string (PostgreSQL `text` cannot hold it).
pub fn parse(bytes: &[u8]) -> Result<Value, BodyError> {
    strict::check(bytes).map_err(|e| {
        let field = match &e {
            StrictError::DuplicateKey { path, key } if path.is_empty() => key.clone(),
            StrictError::DuplicateKey { path, key } => format!("{path}.{key}"),
            StrictError::Syntax(_) => "body".to_owned(),
            other if other.path().is_empty() => "body".to_owned(),
            other => other.path().to_owned(),
        };
        BodyError {
            field,
            message: e.reason(),
        }
    })?;
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| BodyError {
        field: "body".to_owned(),
        message: format!("malformed JSON: {e}"),
    })?;
    integral_floats_to_integers(&mut value);
    Ok(value)
}

/// 2^53: every integer up to it has an exact `f64`.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// JSON has one number type: `81.0` is the integer 81 (as JSON Schema's `integer` says), where
/// the float holds it exactly; larger ones stay floats and are refused where an integer is
/// expected.
fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(members) => members.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// The canonical text of a JSON document: object keys sorted, no insignificant whitespace,
/// strings re-escaped the one way serde_json writes them, numbers exactly as written (`1.0`
/// and `1` stay different: the server reads them differently). `None` if `bytes` is not JSON.
pub fn canonical(bytes: &[u8]) -> Option<String> {
    let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
    let mut out = String::with_capacity(bytes.len());
    write_canonical(raw, &mut out)?;
    Some(out)
}

fn write_canonical(raw: &RawValue, out: &mut String) -> Option<()> {
    let text = raw.get().trim();
    match text.as_bytes().first()? {
        b'{' => {
            // Keys sorted by their decoded text; a duplicate key was refused before hashing.
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).ok()?);
                out.push(':');
                write_canonical(value, out)?;
            }
            out.push('}');
        }
        b'[' => {
            let elements: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            out.push('[');
            for (i, value) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(value, out)?;
            }
            out.push(']');
        }
        b'"' => {
            let s: String = serde_json::from_str(text).ok()?;
            out.push_str(&serde_json::to_string(&s).ok()?);
        }
        // Numbers, true, false, null: one token, kept as written.
        _ => out.push_str(text),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_repeated_key_is_refused_with_its_path() {
        let e = parse(br#"{"uid":1,"items":[],"uid":999}"#).err();
        assert_eq!(
            e,
            Some(BodyError {
                field: "uid".into(),
                message: "duplicate key \"uid\"".into()
            })
        );
        let e = parse(br#"{"a":{"items":[{"x":1,"x":2}]}}"#).err();
        assert_eq!(e.map(|e| e.field).as_deref(), Some("a.items[0].x"));
        let e = parse(br#"{"a":{"b":"x\u0000y"}}"#).err();
        assert_eq!(e.map(|e| e.field).as_deref(), Some("a.b"));
        // The same key in sibling objects is not a duplicate.
        assert!(parse(br#"[{"x":1},{"x":2}]"#).is_ok());
    }

    #[test]
    fn integral_floats_are_integers_where_exact() {
        assert_eq!(
            parse(b"[81.0, 1e3, -2.0]").ok(),
            Some(serde_json::json!([81, 1000, -2]))
        );
        assert_eq!(parse(b"[1.5]").ok(), Some(serde_json::json!([1.5])));
        let big = parse(b"[1e300]").ok();
        assert!(
            big.as_ref().and_then(|v| v[0].as_i64()).is_none(),
            "{big:?}"
        );
    }

    #[test]
    fn malformed_json_is_a_body_error() {
        let e = parse(b"{\"uid\":").err().map(|e| e.field);
        assert_eq!(e.as_deref(), Some("body"));
        assert!(parse(b"{} trailing").is_err());
    }

    #[test]
    fn canonical_form_ignores_key_order_and_whitespace_only() {
        let a = canonical(br#"{"b": [1, {"d":2,"c":"x"}], "a": 1.50}"#);
        let b = canonical(br#"{"a":1.50,"b":[1,{"c":"x","d":2}]}"#);
        assert_eq!(a, b);
        assert_eq!(a.as_deref(), Some(r#"{"a":1.50,"b":[1,{"c":"x","d":2}]}"#));
        assert_ne!(canonical(b"[1.0]"), canonical(b"[1]"));
        assert_eq!(canonical(br#""\u0041""#), canonical(br#""A""#));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\\u{1}-\\u{1f}\"\\\\é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Reverses the key order of every object (serde_json keeps insertion order here).
    fn reversed(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn key_order_and_formatting_do_not_change_the_canonical_form(v in json_value()) {
            let compact = serde_json::to_vec(&v).unwrap_or_default();
            let pretty = serde_json::to_vec_pretty(&reversed(&v)).unwrap_or_default();
            prop_assert!(canonical(&compact).is_some());
            prop_assert_eq!(canonical(&compact), canonical(&pretty));
            prop_assert_eq!(parse(&pretty).ok(), Some(reversed(&v)));
        }
    }
}
