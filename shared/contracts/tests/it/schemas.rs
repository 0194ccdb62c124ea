//! `schemas/` is generated from the types: it must match them byte for byte, cover every routing
//! key (and nothing else), and accept every golden fixture.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use orderbus_contracts::schema::{generate, schema_file_name};
use orderbus_contracts::RoutingKey;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_schemas_match_the_types() {
    let files = generate().expect("generate");
    let mut stale = Vec::new();
    for (name, text) in &files {
        let on_disk =
            std::fs::read_to_string(repo_root().join("schemas").join(name)).unwrap_or_default();
        if &on_disk != text {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is out of date for {stale:?}: run `make schemas` and commit the result"
    );
}

#[test]
fn every_routing_key_has_a_schema_file_and_a_channel_and_vice_versa() {
    let keys: BTreeSet<String> = RoutingKey::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(keys.len(), 15);

    let mut schema_keys = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("schemas")).expect("schemas/ exists") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(key) = name.strip_suffix(".schema.json") {
            schema_keys.insert(key.to_owned());
        }
    }
    assert_eq!(schema_keys, keys, "schema files and routing keys differ");

    let yaml =
        std::fs::read_to_string(repo_root().join("schemas/asyncapi.yaml")).expect("asyncapi.yaml");
    let doc: Value = serde_yaml::from_str(&yaml).expect("asyncapi.yaml is YAML");
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().expect("channels");
    let addresses: BTreeSet<String> = channels
        .values()
        .map(|c| c["address"].as_str().expect("address").to_owned())
        .collect();
    assert_eq!(addresses, keys, "AsyncAPI channels and routing keys differ");
    for channel in channels.values() {
        assert_eq!(channel["bindings"]["amqp"]["exchange"]["name"], "amq.topic");
        let key = RoutingKey::from_str(channel["address"].as_str().unwrap_or_default())
            .expect("known key");
        let message = channel["messages"]
            .as_object()
            .and_then(|m| m.values().next())
            .expect("one message");
        let reference = message["$ref"].as_str().expect("$ref");
        let id = reference.rsplit('/').next().expect("id");
        let payload = &doc["components"]["messages"][id]["payload"]["$ref"];
        assert_eq!(
            payload,
            &Value::from(format!("./{}", schema_file_name(key)))
        );
    }
    // Every key has at least one publisher and one subscriber operation.
    let ops = doc["operations"].as_object().expect("operations");
    for key in RoutingKey::ALL {
        let channel = format!("#/channels/{}", key.as_str().replace('.', "_"));
        for action in ["send", "receive"] {
            assert!(
                ops.values()
                    .any(|o| o["action"] == action && o["channel"]["$ref"] == channel.as_str()),
                "{key} has no {action} operation"
            );
        }
    }
}

fn fixture_files() -> Vec<(RoutingKey, PathBuf)> {
    let mut out = Vec::new();
    for set in ["mq-spec", "orderbus"] {
        for dir in
            std::fs::read_dir(repo_root().join("tests/fixtures").join(set)).expect("fixtures")
        {
            let dir = dir.expect("entry").path();
            let key = RoutingKey::from_str(&dir.file_name().expect("name").to_string_lossy())
                .expect("key dir");
            for file in std::fs::read_dir(&dir).expect("dir") {
                out.push((key, file.expect("entry").path()));
            }
        }
    }
    out
}

#[test]
fn every_fixture_validates_against_its_committed_schema() {
    for (key, file) in fixture_files() {
        let schema_text =
            std::fs::read_to_string(repo_root().join("schemas").join(schema_file_name(key)))
                .expect("schema");
        let schema: Value = serde_json::from_str(&schema_text).expect("schema JSON");
        let validator = jsonschema::validator_for(&schema).expect("valid schema");
        let instance: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("fixture")).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} fails {}: {errors:?}",
            file.display(),
            schema_file_name(key)
        );
        // And a body with a wrong-typed field does not.
        if let Some((field, _)) = instance.as_object().and_then(|o| o.iter().next()) {
            let mut bad = instance.clone();
            bad[field.as_str()] = Value::Bool(true);
            assert!(
                !validator.is_valid(&bad),
                "{}: {field}=true should not validate",
                file.display()
            );
        }
    }
}
