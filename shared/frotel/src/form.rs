//! PHP `http_build_query`-compatible form encoding (what Frotel's official helper sends) and the
//! reverse: flat `key=value` pairs back into a nested tree (what the simulator needs).
//!
//! Encoding rules reproduced from PHP: keys and values go through `urlencode` (RFC 1738: every
//! byte except `A-Z a-z 0-9 - _ .` is `%XX` upper-case, space is `+`), nested arrays become
//! bracket keys (`basket[0][pro_code]`, brackets percent-encoded as `%5B`/`%5D`), booleans become
//! `1`/`0`, and an empty array produces no pair at all.

use std::collections::BTreeMap;

/// One value of a form field: a scalar or a (possibly nested) PHP array.
#[derive(Debug, Clone, PartialEq)]
pub enum FormValue {
    /// A string, sent as is.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float, shortest round-trip representation (`10` for 10.0, `2.5`).
    Float(f64),
    /// A PHP boolean: `1` / `0`.
    Bool(bool),
    /// A PHP list: keys `0..n`.
    List(Vec<FormValue>),
    /// A PHP associative array, in insertion order.
    Map(Vec<(String, FormValue)>),
}

impl From<&str> for FormValue {
    fn from(v: &str) -> Self {
        FormValue::Str(v.to_owned())
    }
}
impl From<String> for FormValue {
    fn from(v: String) -> Self {
        FormValue::Str(v)
    }
}
impl From<i64> for FormValue {
    fn from(v: i64) -> Self {
        FormValue::Int(v)
    }
}
impl From<bool> for FormValue {
    fn from(v: bool) -> Self {
        FormValue::Bool(v)
    }
}
impl From<f64> for FormValue {
    fn from(v: f64) -> Self {
        FormValue::Float(v)
    }
}

/// PHP `urlencode`.
pub fn php_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
    out
}

/// Encode ordered top-level fields like PHP `http_build_query($fields)`.
pub fn encode(fields: &[(String, FormValue)]) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in fields {
        flatten(k.clone(), v, &mut pairs);
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", php_urlencode(k), php_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn flatten(key: String, value: &FormValue, out: &mut Vec<(String, String)>) {
    match value {
        FormValue::Str(s) => out.push((key, s.clone())),
        FormValue::Int(i) => out.push((key, i.to_string())),
        FormValue::Float(f) => out.push((key, f.to_string())),
        FormValue::Bool(b) => out.push((key, if *b { "1" } else { "0" }.to_owned())),
        FormValue::List(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(format!("{key}[{i}]"), v, out);
            }
        }
        FormValue::Map(entries) => {
            for (k, v) in entries {
                flatten(format!("{key}[{k}]"), v, out);
            }
        }
    }
}

/// A decoded form as a tree, the way PHP fills `$_POST`: `a[0][b]=1` becomes
/// `{"a": {"0": {"b": "1"}}}`. Later duplicates overwrite earlier ones (PHP behaviour).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FormTree {
    /// A scalar value.
    Leaf(String),
    /// An array (list or associative; keys kept as strings, sorted numerically when numeric).
    Node(BTreeMap<String, FormTree>),
    /// Nothing (used as the empty default).
    #[default]
    Empty,
}

impl FormTree {
    /// Child by key (`None` for a leaf or a missing key).
    pub fn get(&self, key: &str) -> Option<&FormTree> {
        match self {
            FormTree::Node(m) => m.get(key),
            _ => None,
        }
    }

    /// The scalar string, if this is a leaf.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FormTree::Leaf(s) => Some(s),
            _ => None,
        }
    }

    /// Child values of an array in key order, numeric keys ordered numerically.
    pub fn items(&self) -> Vec<&FormTree> {
        match self {
            FormTree::Node(m) => {
                let mut entries: Vec<(&String, &FormTree)> = m.iter().collect();
                entries.sort_by_key(|(k, _)| (k.parse::<u64>().unwrap_or(u64::MAX), (*k).clone()));
                entries.into_iter().map(|(_, v)| v).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Decode an `application/x-www-form-urlencoded` body into a tree. Malformed bracket keys are
/// kept as literal top-level keys rather than rejected.
pub fn decode(body: &[u8]) -> FormTree {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let mut root = FormTree::Node(BTreeMap::new());
    for (k, v) in pairs {
        let path = split_key(&k);
        insert(&mut root, &path, v);
    }
    root
}

fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    if open == 0 || !key.ends_with(']') {
        return vec![key.to_owned()];
    }
    let mut parts = vec![key[..open].to_owned()];
    let rest = &key[open..];
    // rest looks like "[a][b]"; split on "][" after trimming the outer brackets.
    let inner = &rest[1..rest.len() - 1];
    for p in inner.split("][") {
        if p.contains('[') || p.contains(']') {
            return vec![key.to_owned()];
        }
        parts.push(p.to_owned());
    }
    parts
}

fn insert(node: &mut FormTree, path: &[String], value: String) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !matches!(node, FormTree::Node(_)) {
        *node = FormTree::Node(BTreeMap::new());
    }
    let FormTree::Node(map) = node else {
        return;
    };
    let key = if first.is_empty() {
        // `a[]=x`: append with the next numeric index.
        let next = map
            .keys()
            .filter_map(|k| k.parse::<u64>().ok())
            .max()
            .map_or(0, |m| m + 1);
        next.to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, FormTree::Leaf(value));
    } else {
        let child = map.entry(key).or_default();
        insert(child, rest, value);
    }
}
