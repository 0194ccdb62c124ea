//! Generates `schemas/`: one JSON Schema per routing key and the AsyncAPI 3.0 document.
//!
//! Both come from the Rust types and [`RoutingKey`]'s metadata, so they cannot say something the
//! code does not do; a test fails when the committed files differ from what this generates.

use serde_json::{json, Map, Value};

use crate::routing::{Party, RoutingKey};

/// The file name of a key's schema inside `schemas/`.
pub fn schema_file_name(key: RoutingKey) -> String {
    format!("{}.schema.json", key.as_str())
}

/// The JSON Schema of a key's body, with a title, id and description, as committed.
pub fn message_schema(key: RoutingKey) -> Value {
    let mut schema = key.json_schema().to_value();
    if let Value::Object(map) = &mut schema {
        // Put the identifying fields first so the files read well.
        let mut head = Map::new();
        head.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        head.insert("$id".into(), json!(schema_file_name(key)));
        head.insert("title".into(), json!(key.as_str()));
        head.insert("description".into(), json!(key.summary()));
        for (k, v) in std::mem::take(map) {
            if !head.contains_key(&k) {
                head.insert(k, v);
            }
        }
        *map = head;
    }
    schema
}

/// Every generated file: `(file name, contents)`, deterministic byte for byte.
pub fn generate() -> Result<Vec<(String, String)>, serde_json::Error> {
    let mut files = Vec::new();
    for key in RoutingKey::ALL {
        let text = serde_json::to_string_pretty(&message_schema(key))? + "\n";
        files.push((schema_file_name(key), text));
    }
    files.push(("asyncapi.yaml".into(), asyncapi_yaml()?));
    Ok(files)
}

fn channel_id(key: RoutingKey) -> String {
    // `order.erpstatus` → `order_erpstatus`: AsyncAPI ids may not contain dots in $refs nicely.
    key.as_str().replace('.', "_")
}

fn message_id(key: RoutingKey) -> &'static str {
    key.type_name()
}

/// The AsyncAPI 3.0 document as JSON.
pub fn asyncapi() -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for key in RoutingKey::ALL {
        let cid = channel_id(key);
        let mid = message_id(key);
        channels.insert(
            cid.clone(),
            json!({
                "address": key.as_str(),
                "title": key.as_str(),
                "description": key.summary(),
                "messages": { mid: { "$ref": format!("#/components/messages/{mid}") } },
                "bindings": { "amqp": {
                    "is": "routingKey",
                    "exchange": { "name": "amq.topic", "type": "topic", "durable": true, "autoDelete": false, "vhost": "/" },
                    "bindingVersion": "0.3.0"
                } }
            }),
        );
        messages.insert(
            mid.to_owned(),
            json!({
                "name": mid,
                "title": key.as_str(),
                "summary": key.summary(),
                "contentType": "application/json",
                "correlationId": { "description": "AMQP correlation_id: the order code the message is about", "location": "$message.header#/correlation_id" },
                "payload": { "$ref": format!("./{}", crate::schema::schema_file_name(key)) },
                "bindings": { "amqp": { "deliveryMode": 2, "messageType": key.as_str(), "bindingVersion": "0.3.0" } }
            }),
        );
        for (action, parties) in [("send", key.publishers()), ("receive", key.subscribers())] {
            for party in parties {
                let verb = if action == "send" {
                    "publishes"
                } else {
                    "consumes"
                };
                operations.insert(
                    format!("{}_{action}_{cid}", party.as_str()),
                    json!({
                        "action": action,
                        "channel": { "$ref": format!("#/channels/{cid}") },
                        "summary": format!("{} {verb} {}", party.as_str(), key.as_str()),
                        "tags": [ { "name": party.as_str() } ],
                        "messages": [ { "$ref": format!("#/channels/{cid}/messages/{mid}") } ]
                    }),
                );
            }
        }
    }
    let tags: Vec<Value> = Party::ALL
        .iter()
        .map(|p| json!({ "name": p.as_str(), "description": party_description(*p) }))
        .collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "orderbus",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The order-fulfilment bus between the shop's services and the ERP on RabbitMQ's amq.topic exchange. \
    Routing keys and bodies follow the ERP's MQ spec exactly; order.submit and order.payment bodies are defined by orderbus. \
    Operations are tagged with the party that publishes (send) or consumes (receive) each key. \
    Generated by `make schemas` from shared/contracts; do not edit by hand.",
            "tags": tags
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The local RabbitMQ started by `make run` (console: http://localhost:15672, guest/guest)."
            }
        },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages }
    })
}

fn party_description(party: Party) -> &'static str {
    match party {
        Party::Storefront => "The shop's order service (services/storefront).",
        Party::Payments => "Payments: Sinopac QPay orders, notifications and the reconciliation sweep.",
        Party::Tracking => "Delivery tracking: SweetTracker registration and callbacks, SHOPLINE logistics webhook.",
        Party::Fulfilment => "Fulfilment through Frotel: quotes, order registration, bank payment, tracking.",
        Party::Ops => "Ops tooling: event journal (binds #), per-order timeline, parking/replay, publish bridge.",
        Party::Erp => "The existing ERP (not ours); services/erp-sim stands in for it in development and tests.",
    }
}

/// The AsyncAPI document as YAML text.
pub fn asyncapi_yaml() -> Result<String, serde_json::Error> {
    let header =
        "# Generated by `make schemas` from shared/contracts (RoutingKey metadata). Do not edit.\n";
    serde_yaml::to_string(&asyncapi())
        .map(|yaml| format!("{header}{yaml}"))
        .map_err(|e| <serde_json::Error as serde::ser::Error>::custom(e.to_string()))
}
