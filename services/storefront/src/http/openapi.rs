//! The OpenAPI document: the routes' own annotations, then the limits every route shares (error
//! responses, the bearer scheme, id and header formats, the address fields) stated once here.

use serde_json::{json, Value};
use utoipa::OpenApi;

use super::{error, exchanges, orders, returns, types};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderbus storefront",
        description = "The shop's order service. Every POST honours `Idempotency-Key`; errors are JSON naming the field; illegal transitions are 409 with `current_status`. Amounts are decimal strings with at most two decimals, from 0 to 999999999999.99 (each amount and each total); text fields hold at most 500 characters and no NUL; a key repeated in one JSON object is refused."
    ),
    paths(
        orders::create_order,
        orders::list_orders,
        orders::get_order,
        orders::confirm_receipt,
        orders::cancel_order,
        orders::change_address,
        exchanges::create_exchange,
        exchanges::exchange_waybill,
        exchanges::cancel_exchange,
        returns::create_return,
        returns::return_waybill,
        returns::cancel_return,
    ),
    components(schemas(
        error::ErrorBody,
        types::CreateOrder,
        crate::machine::OrderState,
        crate::machine::ExchangeState,
        crate::machine::ReturnState
    ))
)]
struct ApiDoc;

/// Text: at most 500 characters, no NUL.
const TEXT: &str = r"^[^\u0000]*$";
/// Text that must not be blank.
const REQUIRED_TEXT: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";
/// `Idempotency-Key`: 1 to 255 visible ASCII characters, no surrounding spaces.
const IDEMPOTENCY_KEY: &str = r"^[!-~]([ -~]{0,253}[!-~])?$";

/// The document served at `/openapi.json`.
pub fn document() -> Result<Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    state_limits(&mut doc);
    Ok(doc)
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

fn set(target: Option<&mut Value>, key: &str, value: Value) {
    if let Some(Value::Object(map)) = target {
        map.insert(key.to_owned(), value);
    }
}

fn state_limits(doc: &mut Value) {
    set(
        doc.pointer_mut("/components"),
        "securitySchemes",
        json!({ "bearer": { "type": "http", "scheme": "bearer", "description": "API key as a bearer token" } }),
    );
    set(Some(doc), "security", json!([{ "bearer": [] }]));
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            let Value::Object(item) = item else { continue };
            for (method, op) in item.iter_mut() {
                operation_limits(path, method, op);
            }
        }
    }
    if let Some(address) = doc.pointer_mut("/components/schemas/Address/properties") {
        for field in ["user_name", "mobile", "province", "city", "address"] {
            set(address.get_mut(field), "pattern", json!(REQUIRED_TEXT));
            set(address.get_mut(field), "minLength", json!(1));
            set(address.get_mut(field), "maxLength", json!(500));
        }
        for field in ["district", "phone", "email"] {
            set(address.get_mut(field), "pattern", json!(TEXT));
            set(address.get_mut(field), "maxLength", json!(500));
        }
        for field in ["zip_code", "area_code"] {
            set(address.get_mut(field), "pattern", json!("^[0-9]{0,18}$"));
        }
        set(address.get_mut("address_id"), "minimum", json!(0));
    }
    // A bank refund names its payee (a rule across two fields).
    set(
        doc.pointer_mut("/components/schemas/CreateReturn"),
        "anyOf",
        json!([
            { "properties": { "bank_card": { "maxLength": 0 } } },
            { "required": ["payee_name"], "properties": { "payee_name": { "pattern": REQUIRED_TEXT } } }
        ]),
    );
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        for schema in schemas.values_mut() {
            bound_integers(schema);
        }
    }
}

/// Integers are `i64`: say so where the type has no tighter maximum.
fn bound_integers(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let is_int64 = map.get("format") == Some(&json!("int64"));
    if is_int64 && !map.contains_key("maximum") {
        map.insert("maximum".into(), json!(i64::MAX));
    }
    for child in map.values_mut() {
        match child {
            Value::Object(_) => bound_integers(child),
            Value::Array(items) => items.iter_mut().for_each(bound_integers),
            _ => {}
        }
    }
}

fn operation_limits(path: &str, method: &str, op: &mut Value) {
    let Value::Object(op) = op else { return };
    if let Some(Value::Array(params)) = op.get_mut("parameters") {
        for p in params.iter_mut() {
            param_limits(p);
        }
    }
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        return;
    };
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    };
    add("400", "Invalid request: the field is named in `field`");
    add("401", "Missing or unknown API key");
    add("403", "The API key may not use this route");
    if path.contains('{') {
        add("404", "Unknown order, exchange or return");
    }
    if method == "post" {
        add("413", "Body over the limit (64 KiB by default)");
        add("415", "A body that is not `application/json`");
        add(
            "422",
            "`Idempotency-Key` reused with a different request (method, path or body)",
        );
    }
    let mut unavailable = error_response(
        "The database is unreachable or the request took longer than 30 s; retry after `Retry-After` seconds",
    );
    set(
        Some(&mut unavailable),
        "headers",
        json!({ "Retry-After": { "description": "seconds", "schema": { "type": "integer", "minimum": 1 } } }),
    );
    responses.entry("503".to_owned()).or_insert(unavailable);
}

fn param_limits(p: &mut Value) {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let schema = match name {
        "order_code" | "id" | "uid" => {
            json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX })
        }
        "limit" => json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": 200 }),
        "Idempotency-Key" => json!({
            "type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY
        }),
        _ => return,
    };
    if let Value::Object(map) = p {
        map.insert("schema".to_owned(), schema);
    }
}
