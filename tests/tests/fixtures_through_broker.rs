//! Every golden fixture, published on its routing key through the real RabbitMQ as the ERP would,
//! arrives byte-identical, decodes into its type and re-encodes to the same JSON value.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use orderbus_contracts::{BusMessage, RoutingKey};
use orderbus_testkit::{erp_properties, ErpPublisher, TestQueue};

#[tokio::test]
async fn every_fixture_round_trips_through_rabbitmq() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut fixtures = Vec::new();
    for set in ["mq-spec", "orderbus"] {
        for dir in std::fs::read_dir(root.join(set)).expect("fixture dir") {
            let dir = dir.expect("entry").path();
            let key = RoutingKey::from_str(&dir.file_name().expect("name").to_string_lossy())
                .expect("key");
            for file in std::fs::read_dir(&dir).expect("key dir") {
                let file = file.expect("entry").path();
                let body = std::fs::read(&file).expect("read");
                fixtures.push((key, file, body));
            }
        }
    }
    assert_eq!(fixtures.len(), 34);

    let patterns: Vec<&str> = RoutingKey::ALL.iter().map(|k| k.as_str()).collect();
    let mut queue = TestQueue::bind(&patterns).await.expect("bind test queue");
    let publisher = ErpPublisher::connect().await.expect("connect publisher");

    // Other tests may publish on the same keys at the same time: match ours by message id.
    let mut expected = HashMap::new();
    for (key, file, body) in &fixtures {
        let properties = erp_properties();
        let id = properties.message_id().as_ref().expect("id").to_string();
        publisher
            .publish_with(key.as_str(), body, properties)
            .await
            .expect("confirmed publish");
        expected.insert(id, (*key, file.clone(), body.clone()));
    }

    while !expected.is_empty() {
        let received = queue
            .recv(Duration::from_secs(10))
            .await
            .expect("fixture arrives");
        let id = received
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let Some((key, file, body)) = expected.remove(&id) else {
            continue;
        };
        assert_eq!(received.routing_key, key.as_str());
        assert_eq!(received.body, body, "{} changed on the way", file.display());
        let message = BusMessage::decode(key, &received.body)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let original: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            message.to_json().expect("encode"),
            original,
            "{}",
            file.display()
        );
    }
}
