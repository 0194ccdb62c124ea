//! Schema-driven fuzzing: schemathesis reads `/openapi.json` from the running service and
//! sends a few hundred generated requests (valid and invalid by the document). The run fails on
//! any 5xx, any status, content type or body the document does not declare, and any request
//! valid by the document that the server refuses (so the document states exactly the limits
//! the server enforces).
//!
//! The tool is installed by `make fuzz-tools` into `$CARGO_TARGET_DIR/fuzz-tools` (a Python
//! venv); `ORDERBUS_SCHEMATHESIS` points at another binary. Without it the test fails and says
//! how to install it; `ORDERBUS_SKIP_FUZZ=1` skips it deliberately.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

/// The one rule of `POST /orders` JSON Schema cannot state: the order total (every
/// quantity × unit price, plus shipping) is at most 999999999999.99. Generated orders past it
/// are brought back under it (unit prices 0.00) so "valid by the document" stays acceptable.
const HOOKS: &str = r#"
from decimal import Decimal, InvalidOperation

import schemathesis

LIMIT = Decimal("999999999999.99")


@schemathesis.hook
def map_body(context, body):
    op = context.operation
    if op is None or op.method.upper() != "POST" or op.path != "/orders":
        return body
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return body
    try:
        total = Decimal(str(body.get("shipping_cost", "0")))
        for item in body["items"]:
            total += Decimal(str(item["unit_price"])) * Decimal(int(item["quantity"]))
    except (InvalidOperation, KeyError, TypeError, ValueError):
        return body
    if total > LIMIT:
        for item in body["items"]:
            if isinstance(item, dict):
                item["unit_price"] = "0.00"
        body["shipping_cost"] = "0.00"
    return body
"#;

/// An `Idempotency-Key` the generator happens to reuse with another request is refused with
/// 422 by design (state, not shape; the server answers 422 for nothing else), like a 404 for
/// an id that does not exist or a 409 the state machine refuses.
const CONFIG: &str = r#"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"#;

fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORDERBUS_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    // `<target>/debug/deps/<test binary>` → `<target>/fuzz-tools/bin/schemathesis`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })?;
    let path = target.join("fuzz-tools/bin/schemathesis");
    path.exists().then_some(path)
}

#[tokio::test]
async fn schemathesis_finds_nothing_the_document_does_not_allow() -> anyhow::Result<()> {
    if std::env::var_os("ORDERBUS_SKIP_FUZZ").is_some() {
        eprintln!("ORDERBUS_SKIP_FUZZ set: schema fuzzing skipped");
        return Ok(());
    }
    let Some(tool) = schemathesis() else {
        anyhow::bail!(
            "schemathesis not found: run `make fuzz-tools` (or set ORDERBUS_SCHEMATHESIS, or \
             ORDERBUS_SKIP_FUZZ=1 to skip this test on purpose)"
        );
    };
    let h = Harness::start().await?;
    let work = std::env::temp_dir().join(format!(
        "storefront-fuzz-{}",
        orderbus_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("storefront_fuzz_hooks.py"), HOOKS)?;
    std::fs::write(work.join("schemathesis.toml"), CONFIG)?;
    let schema = h.url("/openapi.json");
    let base = h.base.clone();
    let dir = work.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool)
            .current_dir(&dir)
            .env("PYTHONPATH", &dir)
            .env("SCHEMATHESIS_HOOKS", "storefront_fuzz_hooks")
            .args([
                "--config-file",
                "schemathesis.toml",
                "run",
                &schema,
                "--url",
                &base,
            ])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,positive_data_acceptance",
            ])
            // Bounded by examples, not time: a few hundred requests.
            .args(["--phases", "fuzzing", "--max-examples", "25"])
            .args(["--seed", "20261201", "--workers", "1"])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            .args(["--no-color", "--suppress-health-check", "all"])
            .output()
    })
    .await??;
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis reported failures:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    h.stop().await
}
