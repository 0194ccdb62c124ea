//! Strict JSON decoding: the entry point for every body orderbus reads from outside.
//!
//! `serde_json` accepts an object with the same key twice and keeps the last value, so
//! `{"status":100,"status":700}` is read as status 700 while another reader may see 100. It also
//! accepts `"\u0000"` inside strings, which PostgreSQL `text` refuses and which truncates strings in
//! C-based tools. [`from_slice`] refuses both, naming where they are, and otherwise decodes exactly
//! as `serde_json::from_slice` does, reporting serde's error with the JSON path of the field.
//!
//! The body is read twice: a first pass walks the document without building anything and checks
//! keys and strings; the second pass is serde_json's own deserialization into `T`, so accepted
//! input decodes identically to `serde_json::from_slice`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Why a body was refused. [`StrictError::path`] names the place (`goods[0].name`), empty for the
/// whole document.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    /// The bytes are not one JSON document.
    #[error("malformed JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// An object has the same key twice; `path` is the object's path.
    #[error("{}: duplicate key {key:?}", display_path(path))]
    DuplicateKey { path: String, key: String },
    /// A string (or an object key, then `path` ends with that key) contains U+0000.
    #[error("{}: string contains U+0000", display_path(path))]
    Nul { path: String },
    /// Well-formed JSON that does not fit `T` (serde's message without its line/column suffix).
    #[error("{}: {message}", display_path(path))]
    Data {
        path: String,
        message: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StrictError {
    /// Dotted JSON path of the offending place (`data.express_id`, `goods[0].last_price`); empty
    /// for the whole document.
    pub fn path(&self) -> &str {
        match self {
            StrictError::Syntax(_) => "",
            StrictError::DuplicateKey { path, .. }
            | StrictError::Nul { path }
            | StrictError::Data { path, .. } => path,
        }
    }

    /// What was wrong, without the path.
    pub fn reason(&self) -> String {
        match self {
            StrictError::Syntax(e) => format!("malformed JSON: {e}"),
            StrictError::DuplicateKey { key, .. } => format!("duplicate key {key:?}"),
            StrictError::Nul { .. } => "string contains U+0000".to_owned(),
            StrictError::Data { message, .. } => message.clone(),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "body"
    } else {
        path
    }
}

/// Decodes `bytes` as `T` like `serde_json::from_slice`, but refuses duplicate object keys at any
/// depth and any string or key containing U+0000.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    check(bytes)?;
    decode_checked(bytes)
}

/// Like [`from_slice`], but U+0000 is left to the type: the contracts' text rules refuse it
/// in every field they read, while an ignored (unknown) field may carry anything — a message
/// is not refused for what the reader does not read.
pub fn from_slice_ignoring_unread_nul<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    walk(bytes, false)?;
    decode_checked(bytes)
}

fn decode_checked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let source = e.into_inner();
        StrictError::Data {
            path,
            message: strip_position(source.to_string()),
            source,
        }
    })?;
    // `check` already refused trailing characters; this keeps the two passes equivalent.
    de.end().map_err(StrictError::Syntax)?;
    Ok(value)
}

/// Checks that `bytes` is one JSON document without duplicate keys or U+0000, building nothing.
pub fn check(bytes: &[u8]) -> Result<(), StrictError> {
    walk(bytes, true)
}

fn walk(bytes: &[u8], refuse_nul: bool) -> Result<(), StrictError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk {
        at: &Chain::Root,
        found: &found,
        refuse_nul,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (walked, found.into_inner()) {
        (_, Some(violation)) => Err(violation),
        (Err(e), None) => Err(StrictError::Syntax(e)),
        (Ok(()), None) => Ok(()),
    }
}

/// Drops serde_json's " at line 1 column 5" suffix: the path already says where.
fn strip_position(message: String) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

/// The path from the root to the value being walked, borrowed from the walkers' stack frames.
enum Chain<'a> {
    Root,
    Key { parent: &'a Chain<'a>, key: &'a str },
    Index { parent: &'a Chain<'a>, index: usize },
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chain::Root => Ok(()),
            Chain::Key { parent, key } => {
                if matches!(parent, Chain::Root) {
                    write!(f, "{key}")
                } else {
                    write!(f, "{parent}.{key}")
                }
            }
            Chain::Index { parent, index } => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Walks one JSON value. A violation is stored in `found` (serde's error type cannot carry it)
/// and the walk aborted with a placeholder error.
struct Walk<'a> {
    at: &'a Chain<'a>,
    found: &'a RefCell<Option<StrictError>>,
    /// Refuse U+0000 anywhere (`false`: only duplicate keys; the fields a type reads check
    /// their own text).
    refuse_nul: bool,
}

impl Walk<'_> {
    fn refuse<E: de::Error>(&self, violation: StrictError) -> E {
        *self.found.borrow_mut() = Some(violation);
        E::custom("strict JSON violation")
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.refuse_nul && s.contains('\0') {
            return Err(self.refuse(StrictError::Nul {
                path: self.at.to_string(),
            }));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let at = Chain::Index {
                parent: self.at,
                index,
            };
            let element = Walk {
                at: &at,
                found: self.found,
                refuse_nul: self.refuse_nul,
            };
            if seq.next_element_seed(element)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.refuse_nul && key.contains('\0') {
                let at = Chain::Key {
                    parent: self.at,
                    key: &key,
                };
                return Err(self.refuse(StrictError::Nul {
                    path: at.to_string(),
                }));
            }
            if !seen.insert(key.clone()) {
                return Err(self.refuse(StrictError::DuplicateKey {
                    path: self.at.to_string(),
                    key,
                }));
            }
            let at = Chain::Key {
                parent: self.at,
                key: &key,
            };
            map.next_value_seed(Walk {
                refuse_nul: self.refuse_nul,
                at: &at,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Value};

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        name: String,
        count: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Order {
        status: u16,
        goods: Vec<Line>,
    }

    #[test]
    fn duplicate_top_level_key_is_refused_with_the_key() {
        let err = from_slice::<Value>(br#"{"status":100,"status":700}"#).unwrap_err();
        assert!(
            matches!(&err, StrictError::DuplicateKey { path, key } if path.is_empty() && key == "status"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"body: duplicate key "status""#);
    }

    #[test]
    fn duplicate_nested_key_names_the_object_path() {
        let body =
            br#"{"status":1,"goods":[{"name":"a","count":1},{"name":"b","name":"c","count":2}]}"#;
        let err = from_slice::<Order>(body).unwrap_err();
        assert!(
            matches!(&err, StrictError::DuplicateKey { path, key } if path == "goods[1]" && key == "name"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"goods[1]: duplicate key "name""#);
    }

    #[test]
    fn empty_keys_keep_their_place_in_the_path() {
        // Found by the generated test: the object under key "" under key "" is at ".", not at
        // the root.
        let err = from_slice::<Value>(br#"{"":{"":{"":null,"":1}}}"#).unwrap_err();
        assert!(
            matches!(&err, StrictError::DuplicateKey { path, key } if path == "." && key.is_empty()),
            "{err:?}"
        );
    }

    #[test]
    fn escaped_duplicate_is_still_a_duplicate() {
        let err = from_slice::<Value>(br#"{"a":1,"\u0061":2}"#).unwrap_err();
        assert!(
            matches!(&err, StrictError::DuplicateKey { key, .. } if key == "a"),
            "{err:?}"
        );
    }

    #[test]
    fn nul_in_a_string_names_its_path() {
        let body = br#"{"status":1,"goods":[{"name":"a\u0000b","count":1}]}"#;
        let err = from_slice::<Order>(body).unwrap_err();
        assert!(
            matches!(&err, StrictError::Nul { path } if path == "goods[0].name"),
            "{err:?}"
        );
        assert_eq!(err.path(), "goods[0].name");
    }

    #[test]
    fn nul_in_a_key_names_the_key() {
        let err = from_slice::<Value>(br#"{"x":{"a\u0000":1}}"#).unwrap_err();
        assert!(
            matches!(&err, StrictError::Nul { path } if path == "x.a\0"),
            "{err:?}"
        );
    }

    #[test]
    fn nul_at_the_top_level() {
        let err = from_slice::<String>(br#""\u0000""#).unwrap_err();
        assert!(matches!(&err, StrictError::Nul { path } if path.is_empty()));
    }

    #[test]
    fn type_errors_carry_the_json_path() {
        let body = br#"{"status":1,"goods":[{"name":"a","count":"x"}]}"#;
        let err = from_slice::<Order>(body).unwrap_err();
        assert_eq!(err.path(), "goods[0].count");
        assert!(matches!(err, StrictError::Data { .. }));
        assert!(!err.reason().contains(" at line "), "{}", err.reason());
    }

    #[test]
    fn unknown_fields_are_reported_by_serde_with_a_path() {
        let body = br#"{"status":1,"goods":[{"name":"a","count":1,"extra":0}]}"#;
        let err = from_slice::<Order>(body).unwrap_err();
        assert!(err.path().starts_with("goods[0]"), "{err:?}");
        assert!(err.reason().contains("unknown field"), "{err:?}");
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_refused() {
        for body in [&b"{"[..], b"{} {}", b"", b"[1,]", b"{\"a\":1}x"] {
            let err = from_slice::<Value>(body).unwrap_err();
            assert!(matches!(err, StrictError::Syntax(_)), "{body:?}: {err:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(from_slice::<Value>(body.as_bytes()).is_err());
    }

    #[test]
    fn accepted_input_decodes_like_serde_json() {
        let body = br#"{"status":7,"goods":[{"name":"n\u00e9","count":2}]}"#;
        let strict: Order = from_slice(body).unwrap();
        let plain: Order = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, plain);
        assert_eq!(
            from_slice::<Value>(body).unwrap(),
            json!({"status":7,"goods":[{"name":"né","count":2}]})
        );
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// A JSON tree whose objects are lists of members, so the rendering controls key order
        /// and can repeat a key.
        #[derive(Clone, Debug)]
        enum Node {
            Leaf(Value),
            Array(Vec<Node>),
            Object(Vec<(String, Node)>),
        }

        fn key() -> impl Strategy<Value = String> {
            "[a-z_\"\\\\é]{0,6}"
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e12f64..1e12).prop_map(Value::from),
                "[ -~é中\n\t]{0,12}".prop_map(Value::String),
            ]
        }

        fn node() -> impl Strategy<Value = Node> {
            leaf()
                .prop_map(Node::Leaf)
                .prop_recursive(4, 48, 6, |inner| {
                    prop_oneof![
                        prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
                        prop::collection::vec((key(), inner), 0..6).prop_map(|members| {
                            // Unique keys: the first occurrence wins.
                            let mut seen = HashSet::new();
                            Node::Object(
                                members
                                    .into_iter()
                                    .filter(|(k, _)| seen.insert(k.clone()))
                                    .collect(),
                            )
                        }),
                    ]
                })
        }

        fn render(node: &Node, out: &mut String) {
            match node {
                Node::Leaf(v) => out.push_str(&v.to_string()),
                Node::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        render(item, out);
                    }
                    out.push(']');
                }
                Node::Object(members) => {
                    out.push('{');
                    for (i, (k, v)) in members.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        render(v, out);
                    }
                    out.push('}');
                }
            }
        }

        /// Every non-empty object: its path as `from_slice` reports it, and the route of child
        /// indices that leads to it.
        fn objects(
            node: &Node,
            path: String,
            route: Vec<usize>,
            out: &mut Vec<(String, Vec<usize>)>,
        ) {
            match node {
                Node::Leaf(_) => {}
                Node::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let mut next = route.clone();
                        next.push(i);
                        objects(item, format!("{path}[{i}]"), next, out);
                    }
                }
                Node::Object(members) => {
                    if !members.is_empty() {
                        out.push((path.clone(), route.clone()));
                    }
                    for (i, (k, v)) in members.iter().enumerate() {
                        // Structurally at the root, as the parser decides (an empty key's
                        // path is empty too, so the string cannot tell).
                        let child = if route.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        let mut next = route.clone();
                        next.push(i);
                        objects(v, child, next, out);
                    }
                }
            }
        }

        fn at_route<'a>(node: &'a mut Node, route: &[usize]) -> &'a mut Node {
            match (route.split_first(), node) {
                (None, node) => node,
                (Some((&i, rest)), Node::Array(items)) => at_route(&mut items[i], rest),
                (Some((&i, rest)), Node::Object(members)) => at_route(&mut members[i].1, rest),
                (Some(_), Node::Leaf(_)) => unreachable!("routes only lead through containers"),
            }
        }

        proptest! {
            #[test]
            fn without_duplicates_equals_serde_json(tree in node()) {
                let mut text = String::new();
                render(&tree, &mut text);
                let plain: Value = serde_json::from_str(&text).unwrap();
                let strict: Value = from_slice(text.as_bytes()).unwrap();
                prop_assert_eq!(strict, plain);
            }

            #[test]
            fn an_injected_duplicate_is_always_refused(
                tree in node(),
                pick in any::<prop::sample::Index>(),
                member in any::<prop::sample::Index>(),
                extra in leaf(),
            ) {
                let mut tree = tree;
                let mut targets = Vec::new();
                objects(&tree, String::new(), Vec::new(), &mut targets);
                let (expected_path, expected_key) = if targets.is_empty() {
                    // No object to inject into: wrap the tree in one with a repeated key.
                    tree = Node::Object(vec![
                        ("k".into(), tree),
                        ("k".into(), Node::Leaf(extra)),
                    ]);
                    (String::new(), "k".to_owned())
                } else {
                    let index = pick.index(targets.len());
                    let (path, route) = targets.swap_remove(index);
                    let Node::Object(members) = at_route(&mut tree, &route) else {
                        unreachable!("targets are objects")
                    };
                    let at = member.index(members.len());
                    let key = members[at].0.clone();
                    members.push((key.clone(), Node::Leaf(extra)));
                    (path, key)
                };
                let mut text = String::new();
                render(&tree, &mut text);
                match from_slice::<Value>(text.as_bytes()) {
                    Err(StrictError::DuplicateKey { path, key }) => {
                        prop_assert_eq!(path, expected_path);
                        prop_assert_eq!(key, expected_key);
                    }
                    other => prop_assert!(false, "{text}: {other:?}"),
                }
            }

            #[test]
            fn an_injected_nul_is_always_refused(prefix in "[a-z]{0,5}", suffix in "[a-z]{0,5}", depth in 0usize..5) {
                let mut text = Value::String(format!("{prefix}\0{suffix}")).to_string();
                let mut path = String::new();
                for level in 0..depth {
                    text = format!(r#"{{"ok":1,"l{level}":[{text}]}}"#);
                    path = format!("l{level}[0]{}{path}", if path.is_empty() { "" } else { "." });
                }
                match from_slice::<Value>(text.as_bytes()) {
                    Err(StrictError::Nul { path: got }) => prop_assert_eq!(got, path),
                    other => prop_assert!(false, "{text}: {other:?}"),
                }
            }
        }
    }
}
