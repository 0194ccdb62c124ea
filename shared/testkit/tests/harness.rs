//! The harness itself works against the real services and cleans up after itself.

use std::time::Duration;

use orderbus_testkit::{admin_database_url, ErpPublisher, TestDb, TestQueue, TestkitError};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Row};

async fn database_exists(name: &str) -> bool {
    let admin: PgConnectOptions = admin_database_url().parse().expect("admin url");
    let mut conn = admin.connect().await.expect("admin connection");
    let row = sqlx::query("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("query");
    row.get::<i64, _>(0) == 1
}

#[tokio::test]
async fn each_test_database_is_fresh_and_dropped_afterwards() {
    let db = TestDb::create().await.expect("create");
    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(db.pool())
    .await
    .expect("query");
    assert_eq!(tables, 0, "a new database has no tables");
    let other = TestDb::create().await.expect("create second");
    assert_ne!(other.name(), name);
    drop(db);
    assert!(!database_exists(&name).await, "dropped with the value");
}

#[tokio::test]
async fn a_test_queue_receives_what_is_published_on_its_keys_only() {
    let key = format!("testkit.{}", orderbus_testkit::unique_suffix());
    let other = format!("{key}.other");
    let mut queue = TestQueue::bind(&[key.as_str()]).await.expect("bind");
    let publisher = ErpPublisher::connect().await.expect("publisher");
    publisher
        .publish(&key, br#"{"n":1}"#)
        .await
        .expect("publish");
    let received = queue.recv(Duration::from_secs(5)).await.expect("received");
    assert_eq!(received.routing_key, key);
    assert_eq!(received.json(), serde_json::json!({"n": 1}));
    assert_eq!(received.properties.delivery_mode(), &Some(2), "persistent");

    // A key nobody binds is returned by the broker, so the mandatory publish fails.
    let unroutable = publisher.publish(&other, b"{}").await;
    assert!(
        matches!(unroutable, Err(TestkitError::NotConfirmed)),
        "{unroutable:?}"
    );
    assert!(matches!(
        queue.recv(Duration::from_millis(300)).await,
        Err(TestkitError::Timeout(_))
    ));
}
