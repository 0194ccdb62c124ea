//! The built binary: `--help` says what it is; `publish` validates against the contracts before
//! anything reaches the broker.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::{check, fixture, repo_root, WAIT};
use orderbus_testkit::{amqp_url, TestQueue};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_orderbus-erp-sim");

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("ORDERBUS_AMQP_URL", amqp_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or_default()).expect("stdin");
    }
    child.wait_with_output().expect("binary finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_says_it_is_a_stand_in_not_deployed_to_production() {
    for args in [&["--help"][..], &["-h"][..], &["run", "--help"][..]] {
        let out = run(args, None);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("STAND-IN"), "{args:?}: {help}");
        assert!(
            help.contains("NOT deployed to production"),
            "{args:?}: {help}"
        );
    }
    let run_help = text(&run(&["run", "--help"], None).stdout);
    assert!(run_help.contains("--auto-pay") && run_help.contains("--reject-rate"));
}

#[tokio::test]
async fn publish_accepts_a_valid_fixture_and_sends_exactly_the_spec_json_confirmed() {
    let mut queue = TestQueue::bind(&["order.erpstatus"]).await.expect("queue");
    let file = repo_root().join("tests/fixtures/mq-spec/order.erpstatus/shipped-600.json");
    let file = file.to_string_lossy().into_owned();
    let out =
        tokio::task::spawn_blocking(move || run(&["publish", "order.erpstatus", &file], None))
            .await
            .expect("join");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", text(&out.stderr));
    let message_id = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("message_id="))
        .expect("the message id is printed")
        .to_owned();

    // Other tests may publish the same fixture: pick ours by message id.
    let deadline = std::time::Instant::now() + WAIT;
    let received = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let r = queue
            .recv(left)
            .await
            .expect("the published message arrives");
        if r.properties.message_id().as_ref().map(|m| m.as_str()) == Some(message_id.as_str()) {
            break r;
        }
    };
    check(&received, "erp-sim");
    let sent: Value = serde_json::from_slice(&received.body).expect("JSON");
    let expected: Value =
        serde_json::from_slice(&fixture("mq-spec/order.erpstatus/shipped-600.json"))
            .expect("fixture JSON");
    assert_eq!(sent, expected);
    assert_eq!(
        received
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("100000"),
        "correlation id = order code"
    );
}

#[test]
fn publish_refuses_an_invalid_body_naming_the_field() {
    let mut body: Value =
        serde_json::from_slice(&fixture("mq-spec/order.erpstatus/shipped-600.json")).expect("JSON");
    body["data"]["express_id"] = Value::Bool(true);
    let bytes = serde_json::to_vec(&body).expect("JSON");
    let out = run(&["publish", "order.erpstatus", "-"], Some(&bytes));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("data.express_id"), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "nothing was published");

    // 600 without its waybill is refused by the contract's own rule, also by name.
    let out = run(
        &["publish", "order.erpstatus"],
        Some(br#"{"uid":1,"order_code":2,"status":600}"#),
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("data"), "{}", text(&out.stderr));
}

#[test]
fn publish_refuses_unknown_routing_keys_and_broken_json() {
    let out = run(&["publish", "order.nope", "-"], Some(b"{}"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("order.nope"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        &["publish", "erp.updateInvoicePdfUrl", "-"],
        Some(b"{\"uid\": 1,"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("malformed JSON"),
        "{}",
        text(&out.stderr)
    );
}
