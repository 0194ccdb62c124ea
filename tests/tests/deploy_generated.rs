//! The generated parts of `deploy/` are what the code generates, and the generated permissions
//! mean what the contracts say.

use std::path::PathBuf;
use std::process::Command;

use orderbus_contracts::{Party, RoutingKey};
use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn definitions() -> Value {
    let text = std::fs::read_to_string(deploy_dir().join("generated/definitions.json"))
        .expect("deploy/generated/definitions.json is committed");
    serde_json::from_str(&text).expect("definitions.json is JSON")
}

fn party(user: &str) -> Party {
    Party::ALL
        .into_iter()
        .find(|p| p.as_str() == user)
        .unwrap_or_else(|| panic!("broker user {user:?} is not a contracts party"))
}

fn regex_of(entry: &Value, field: &str) -> Regex {
    let text = entry[field]
        .as_str()
        .expect("permission regexes are strings");
    Regex::new(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn entries(section: &str) -> Vec<Value> {
    definitions()[section]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn deploy_generated_files_match_the_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_orderbus-deploy-gen"))
        .arg("--check")
        .arg(deploy_dir())
        .output()
        .expect("runs orderbus-deploy-gen");
    assert!(
        output.status.success(),
        "deploy/ differs from what the code generates (run `make deploy-gen`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deploy_topic_write_permissions_are_exactly_the_contract_publishers() {
    let topic = entries("topic_permissions");
    assert!(!topic.is_empty());
    for entry in &topic {
        let user = entry["user"].as_str().expect("user");
        let write = regex_of(entry, "write");
        for key in RoutingKey::ALL {
            assert_eq!(
                write.is_match(key.as_str()),
                key.publishers().contains(&party(user)),
                "{user} writing {key}"
            );
        }
    }
}

#[test]
fn deploy_nobody_may_write_to_the_default_exchange_or_read_other_queues() {
    let permissions = entries("permissions");
    let queues: Vec<String> = entries("queues")
        .iter()
        .map(|q| q["name"].as_str().expect("queue name").to_owned())
        .collect();
    for entry in &permissions {
        let user = entry["user"].as_str().expect("user");
        assert!(!regex_of(entry, "write").is_match("amq.default"), "{user}");
        for queue in &queues {
            let own = queue.starts_with(&format!("{user}."));
            // ops takes in every service's parking queue (and nothing else of theirs).
            let parking_for_ops = user == "ops" && queue.ends_with(".parking");
            assert_eq!(
                regex_of(entry, "read").is_match(queue),
                own || parking_for_ops,
                "{user} reading {queue}"
            );
            assert_eq!(
                regex_of(entry, "configure").is_match(queue),
                own,
                "{user} configuring {queue}"
            );
        }
    }
}

proptest! {
    /// A key that is not exactly one a user publishes never passes its topic write regex:
    /// no prefix, suffix or wildcard slips through.
    #[test]
    fn deploy_topic_write_refuses_near_misses(
        key_index in 0..RoutingKey::ALL.len(),
        prefix in "[a-z.#*]{0,3}",
        suffix in "[a-zA-Z.#*]{0,3}",
    ) {
        let key = RoutingKey::ALL[key_index].as_str();
        let candidate = format!("{prefix}{key}{suffix}");
        prop_assume!(candidate != key);
        let exact = RoutingKey::ALL.iter().any(|k| k.as_str() == candidate);
        for entry in entries("topic_permissions") {
            let user = entry["user"].as_str().expect("user").to_owned();
            let allowed = exact
                && RoutingKey::ALL
                    .iter()
                    .any(|k| k.as_str() == candidate && k.publishers().contains(&party(&user)));
            prop_assert_eq!(regex_of(&entry, "write").is_match(&candidate), allowed, "{} {}", user, candidate);
        }
    }
}
