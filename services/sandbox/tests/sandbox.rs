//! The sandbox serves every simulator on its own port, and each speaks its partner's protocol.

use orderbus_sandbox::{Sandbox, SandboxConfig, SandboxError};
use orderbus_sinopac::client::{Client, ClientConfig};
use orderbus_sinopac::crypto::HashId;

fn any_ports() -> SandboxConfig {
    SandboxConfig {
        sweettracker_port: 0,
        sinopac_port: 0,
        frotel_ports: [0, 0, 0],
        shopline_port: 0,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn every_simulator_answers_on_its_own_port() {
    let sandbox = Sandbox::start(any_ports()).await.expect("start");
    let names: Vec<&str> = sandbox.served.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "sweettracker",
            "sinopac",
            "frotel-mirror-1",
            "frotel-mirror-2",
            "frotel-mirror-3",
            "shopline"
        ]
    );
    let mut ports: Vec<u16> = sandbox.served.iter().map(|s| s.addr.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 6, "one port each");

    // Sinopac: a real Nonce call through the client (crypto keys of the demo shop).
    let base = format!("http://{}", sandbox.addr("sinopac").expect("sinopac"));
    let config = ClientConfig::new(base, "NA0249_001", HashId::demo_na0249())
        .with_key_id("b5e6986d-8636-4aa0-8c93-441ad14b2098");
    let client = Client::new(config).expect("client");
    let nonce = client.nonce().await.expect("nonce");
    assert!(!nonce.is_empty());

    let http = reqwest::Client::new();
    // Frotel: every mirror answers the web service's envelope (a wrong api key is a business error).
    for mirror in ["frotel-mirror-1", "frotel-mirror-2", "frotel-mirror-3"] {
        let url = format!(
            "http://{}/order/tracking.json",
            sandbox.addr(mirror).expect("mirror")
        );
        let reply: serde_json::Value = http
            .post(url)
            .form(&[("api", "wrong-key"), ("factor", "22000000000000000001")])
            .send()
            .await
            .expect("mirror reachable")
            .json()
            .await
            .expect("JSON envelope");
        assert!(
            reply
                .get("code")
                .and_then(|c| c.as_i64())
                .is_some_and(|c| c != 0),
            "{mirror}: {reply}"
        );
    }
    // SweetTracker and SHOPLINE admin routes.
    for (name, path) in [
        ("sweettracker", "/__sim/registrations"),
        ("shopline", "/__sim/history"),
    ] {
        let url = format!("http://{}{path}", sandbox.addr(name).expect("addr"));
        let status = http.get(url).send().await.expect("reachable").status();
        assert!(status.is_success(), "{name}: {status}");
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let first = Sandbox::start(any_ports()).await.expect("start");
    let taken = first.addr("sinopac").expect("sinopac").port();
    let second = Sandbox::start(SandboxConfig {
        sinopac_port: taken,
        ..any_ports()
    })
    .await;
    match second {
        Err(SandboxError::Bind { addr, .. }) => assert!(addr.ends_with(&format!(":{taken}"))),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second sandbox bound a taken port"),
    }
    first.stop().await;
}

/// Waits (at most 5 s) until nothing accepts TCP connections on `addr`.
async fn wait_refusing(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn frotel_order() -> orderbus_frotel::PhysicalOrder {
    use orderbus_frotel::{Address, BasketItem, BuyType, Buyer, Gender, PhysicalOrder, SendType};
    PhysicalOrder::new(
        Buyer {
            name: "علی".into(),
            family: "رضایی".into(),
            phone: "02188888888".into(),
            mobile: "09120000000".into(),
            gender: Gender::Male,
            email: None,
        },
        Address {
            address: "تهران، خیابان آزادی، پلاک ۱".into(),
            code_posti: "1234567890".into(),
            province: 8,
            city: 301,
        },
        BuyType::Cod,
        SendType::Pishtaz,
        vec![BasketItem::new("mobile888", "موبایل", 670_000, 1, 200)],
    )
}

fn frotel_client(sandbox: &Sandbox, mirrors: &[&str]) -> orderbus_frotel::FrotelClient {
    let key = orderbus_frotel::sim::SimConfig::default().api_key;
    let mirrors = mirrors
        .iter()
        .map(|m| format!("http://{}/", sandbox.addr(m).expect("mirror")))
        .collect();
    orderbus_frotel::FrotelClient::new(orderbus_frotel::ClientConfig {
        mirrors,
        connect_timeout: std::time::Duration::from_millis(500),
        ..orderbus_frotel::ClientConfig::new(key)
    })
    .expect("client")
}

#[tokio::test]
async fn a_down_frotel_mirror_refuses_connections_so_nothing_is_sent() {
    use orderbus_frotel::sim::Fault;
    let sandbox = Sandbox::start(any_ports()).await.expect("start");
    let down = sandbox.addr("frotel-mirror-1").expect("mirror 1");
    sandbox.frotel.set_fault(0, Fault::Down);
    wait_refusing(down).await;

    // Only the down mirror: the order is refused as not sent, never "outcome unknown".
    let alone = frotel_client(&sandbox, &["frotel-mirror-1"]);
    match alone.register_order(&frotel_order()).await {
        Err(e @ orderbus_frotel::Error::Transport { .. }) => assert!(!e.is_outcome_unknown()),
        other => panic!("expected a not-sent transport error, got {other:?}"),
    }
    assert_eq!(sandbox.frotel.hits(0), 0, "a down mirror receives nothing");
    assert!(sandbox.frotel.orders().is_empty());

    // With the others behind it, the client fails over and the order exists exactly once.
    let failover = frotel_client(
        &sandbox,
        &["frotel-mirror-1", "frotel-mirror-2", "frotel-mirror-3"],
    );
    failover
        .register_order(&frotel_order())
        .await
        .expect("registered through mirror 2");
    assert_eq!(sandbox.frotel.orders().len(), 1);
    assert_eq!(sandbox.frotel.hits(0), 0);
    assert_eq!(sandbox.frotel.hits(1), 1);

    // Back up: the same port accepts again.
    sandbox.frotel.set_fault(0, Fault::None);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::net::TcpStream::connect(down).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mirror 1 stays down"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sandbox.stop().await;
}
