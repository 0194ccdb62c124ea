//! Mirror failover, the circuit breaker, and "outcome unknown" for non-idempotent calls.

use orderbus_frotel::client::paths;
use orderbus_frotel::sim::Fault;
use orderbus_frotel::{BuyType, ClientConfig, Error, FrotelClient, PriceRequest, SendType};
use std::time::Duration;

use crate::common::{self, client, refused_url, start};

fn prices() -> PriceRequest {
    PriceRequest {
        des_city: 301,
        price: 670_000,
        weight: 200,
        send_types: vec![SendType::Pishtaz],
        buy_types: vec![BuyType::OnlineCash],
    }
}

const SLOW: Duration = Duration::from_secs(6);

#[tokio::test]
async fn connection_refused_fails_over_even_for_register_order() {
    let env = start().await;
    // Mirror 0 is a port nobody listens on; mirrors 1 and 2 are the simulator's.
    let urls = vec![refused_url(), env.urls[1].clone(), env.urls[2].clone()];
    let c = client(&urls);
    c.get_prices(&prices()).await.expect("prices via mirror 1");
    let r = c
        .register_order(&common::physical(BuyType::Cod))
        .await
        .expect("order via mirror 1");
    assert_eq!(env.sim.orders().len(), 1);
    assert_eq!(
        env.sim.order(r.factor.as_str()).map(|o| o.total),
        Some(r.total)
    );
    assert_eq!(env.sim.hits(1), 2);
    assert_eq!(env.sim.hits(2), 0);
}

#[tokio::test]
async fn simulated_down_mirror_refuses_connections_and_is_skipped() {
    let env = start().await;
    env.sim.set_fault(0, Fault::Down);
    common::wait_refusing(&env.urls[0]).await;
    let c = client(&env.urls);
    c.register_order(&common::physical(BuyType::Cod))
        .await
        .expect("order via mirror 1");
    c.tracking(&orderbus_frotel::FactorId::parse(&env.sim.orders()[0].factor).expect("id"))
        .await
        .expect("tracking");
    assert_eq!(env.sim.hits(0), 0, "a down mirror receives nothing");
    assert_eq!(env.sim.hits(1), 2);
    assert_eq!(env.sim.orders().len(), 1);
    // Back up: the same address accepts again.
    env.sim.set_fault(0, Fault::None);
    common::wait_listening(&env.urls[0]).await;
    client(&env.urls)
        .get_prices(&prices())
        .await
        .expect("mirror 0 is back");
    assert_eq!(env.sim.hits(0), 1);
}

/// A listener whose accept queue is full: SYNs are dropped, so connecting times out. The
/// listener is returned (never accepting) so it stays open.
async fn blackhole() -> (String, Vec<std::net::TcpStream>, tokio::net::TcpListener) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = sock.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (format!("http://{addr}/"), fillers, listener)
}

#[tokio::test]
async fn connect_timeout_means_not_sent_and_fails_over_even_for_register_order() {
    let env = start().await;
    let (url, _fillers, _sock) = blackhole().await;
    let urls = vec![url, env.urls[1].clone(), env.urls[2].clone()];
    let c = client(&urls);
    c.register_order(&common::physical(BuyType::Cod))
        .await
        .expect("order via mirror 1");
    assert_eq!(env.sim.orders().len(), 1);
    assert_eq!(env.sim.hits(1), 1);
    assert!(!c.mirror_health()[0].healthy);
}

#[tokio::test]
async fn idempotent_calls_fail_over_on_5xx_garbage_and_read_timeout() {
    for fault in [
        Fault::ServerError,
        Fault::Garbage,
        Fault::Slow(SLOW),
        Fault::DropAfterProcessing,
    ] {
        let env = start().await;
        env.sim.set_fault(0, fault);
        let c = client(&env.urls);
        let p = c.get_prices(&prices()).await;
        assert!(p.is_ok(), "{fault:?}: {p:?}");
        assert_eq!(env.sim.hits(0), 1, "{fault:?}: mirror 0 was tried");
        assert_eq!(env.sim.hits(1), 1, "{fault:?}: mirror 1 answered");
        assert!(
            !c.mirror_health()[0].healthy,
            "{fault:?}: mirror 0 marked unhealthy"
        );
    }
}

#[tokio::test]
async fn order_pay_and_tracking_fail_over_across_two_bad_mirrors() {
    let env = start().await;
    let r = client(&env.urls)
        .register_order(&common::physical(BuyType::OnlineCash))
        .await
        .expect("reg");
    env.sim.set_fault(0, Fault::ServerError);
    env.sim.set_fault(1, Fault::Garbage);
    let c = client(&env.urls);
    assert_eq!(
        c.tracking(&r.factor).await.expect("tracking").order.factor,
        r.factor
    );
    assert_eq!(
        c.order_pay(&r.factor).await.expect("orderPay").price,
        r.total
    );
    assert_eq!(env.sim.method_hits(2, paths::TRACKING), 1);
    assert_eq!(env.sim.method_hits(2, paths::ORDER_PAY), 1);
}

#[tokio::test]
async fn all_mirrors_failing_reports_transport_or_protocol() {
    let env = start().await;
    for i in 0..3 {
        env.sim.set_fault(i, Fault::ServerError);
    }
    let err = client(&env.urls).get_prices(&prices()).await;
    assert!(
        matches!(err, Err(Error::Transport { attempts: 3, .. })),
        "{err:?}"
    );
    for i in 0..3 {
        env.sim.set_fault(i, Fault::Garbage);
    }
    let err = client(&env.urls).get_prices(&prices()).await;
    assert!(matches!(err, Err(Error::Protocol { .. })), "{err:?}");
    let err = client(&[refused_url(), refused_url()])
        .get_prices(&prices())
        .await;
    assert!(
        matches!(err, Err(Error::Transport { attempts: 2, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn business_error_never_fails_over() {
    let env = start().await;
    let mut cfg = common::config(&env.urls);
    cfg.api_key = "revoked".into();
    let c = FrotelClient::new(cfg).expect("client");
    let err = c.register_order(&common::physical(BuyType::Cod)).await;
    assert!(
        matches!(err, Err(Error::Business { code: 1, .. })),
        "{err:?}"
    );
    let err = c.get_prices(&prices()).await;
    assert!(
        matches!(err, Err(Error::Business { code: 1, .. })),
        "{err:?}"
    );
    assert_eq!(env.sim.hits(0), 2);
    assert_eq!(env.sim.hits(1) + env.sim.hits(2), 0);
    assert!(
        c.mirror_health().iter().all(|m| m.healthy),
        "a business answer is a healthy mirror"
    );
}

#[tokio::test]
async fn circuit_breaker_skips_a_recently_failed_mirror() {
    let env = start().await;
    env.sim.set_fault(0, Fault::ServerError);
    let c = client(&env.urls);
    c.get_prices(&prices())
        .await
        .expect("first call fails over");
    assert_eq!((env.sim.hits(0), env.sim.hits(1)), (1, 1));
    // Mirror 0 recovers, but this client still avoids it inside the breaker window.
    env.sim.clear_faults();
    c.get_prices(&prices()).await.expect("second call");
    c.register_order(&common::physical(BuyType::Cod))
        .await
        .expect("register");
    assert_eq!(env.sim.hits(0), 1, "skipped while unhealthy");
    assert_eq!(env.sim.hits(1), 3);
    let health = c.mirror_health();
    assert!(!health[0].healthy && health[1].healthy && health[2].healthy);
    // Reset (or a zero window) sends traffic to mirror 0 again.
    c.reset_mirror_health();
    c.get_prices(&prices()).await.expect("after reset");
    assert_eq!(env.sim.hits(0), 2);

    let zero = FrotelClient::new(ClientConfig {
        unhealthy_for: Duration::ZERO,
        ..common::config(&env.urls)
    })
    .expect("client");
    env.sim.set_fault(0, Fault::ServerError);
    zero.get_prices(&prices()).await.expect("fails over");
    env.sim.clear_faults();
    zero.get_prices(&prices())
        .await
        .expect("retries mirror 0 at once");
    assert_eq!(env.sim.hits(0), 4);
}

#[tokio::test]
async fn an_all_red_breaker_still_tries_the_mirrors() {
    let env = start().await;
    for i in 0..3 {
        env.sim.set_fault(i, Fault::ServerError);
    }
    let c = client(&env.urls);
    assert!(c.get_prices(&prices()).await.is_err());
    assert!(c.mirror_health().iter().all(|m| !m.healthy));
    env.sim.clear_faults();
    c.get_prices(&prices())
        .await
        .expect("least recently failed mirror is tried");
    assert_eq!(
        env.sim.hits(0),
        2,
        "mirror 0 failed first, so it is retried first"
    );
}

#[tokio::test]
async fn register_order_outcome_unknown_is_not_retried_and_not_duplicated() {
    for fault in [
        Fault::ServerErrorAfterProcessing,
        Fault::DropAfterProcessing,
        Fault::SlowAfterProcessing(SLOW),
    ] {
        let env = start().await;
        env.sim.set_fault(0, fault);
        let c = client(&env.urls);
        let err = c
            .register_order(&common::physical(BuyType::OnlineCash))
            .await;
        match &err {
            Err(Error::OutcomeUnknown { method, mirror, .. }) => {
                assert_eq!(*method, paths::REGISTER_ORDER);
                assert_eq!(mirror, &env.urls[0]);
            }
            other => panic!("{fault:?}: expected OutcomeUnknown, got {other:?}"),
        }
        assert_eq!(
            env.sim.orders().len(),
            1,
            "{fault:?}: the mirror did register the order once"
        );
        assert_eq!(
            env.sim.hits(1) + env.sim.hits(2),
            0,
            "{fault:?}: not retried elsewhere"
        );
    }
}

#[tokio::test]
async fn other_non_idempotent_calls_report_outcome_unknown_too() {
    let env = start().await;
    let c = client(&env.urls);
    let r = c
        .register_order_virtual(&common::virtual_order())
        .await
        .expect("reg");
    // A plain 5xx (even one the server produced before processing) is ambiguous to the client.
    env.sim.set_fault(0, Fault::ServerError);
    let err = c.pay(&r.factor, 1, "http://shop.test/cb").await;
    assert!(
        err.as_ref().is_err_and(Error::is_outcome_unknown),
        "{err:?}"
    );
    env.sim.set_fault(0, Fault::Garbage);
    c.reset_mirror_health();
    let cb = orderbus_frotel::CallbackParams {
        payment_id: "1".into(),
        reference: "x".into(),
    };
    let err = c.check_pay(&r.factor, &cb).await;
    assert!(
        err.as_ref().is_err_and(Error::is_outcome_unknown),
        "{err:?}"
    );
    c.reset_mirror_health();
    env.sim.set_fault(0, Fault::ServerErrorAfterProcessing);
    let err = c.register_order_service(&common::service_order()).await;
    assert!(
        err.as_ref().is_err_and(Error::is_outcome_unknown),
        "{err:?}"
    );
    assert_eq!(env.sim.hits(1) + env.sim.hits(2), 0);
    assert_eq!(env.sim.orders().len(), 2);
}

#[tokio::test]
async fn admin_route_toggles_faults_over_http() {
    let env = start().await;
    let http = reqwest::Client::new();
    let set = |fault: &'static str| {
        http.post(format!("{}__sim/fault", env.urls[1]))
            .json(&serde_json::json!({"mirror": 0, "fault": fault, "delay_ms": 0}))
            .send()
    };
    assert!(set("server_error")
        .await
        .expect("admin")
        .status()
        .is_success());
    assert_eq!(env.sim.fault(0), Fault::ServerError);
    let state: serde_json::Value = http
        .get(format!("{}__sim/state", env.urls[2]))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["faults"][0], "ServerError");
    client(&env.urls)
        .get_prices(&prices())
        .await
        .expect("fails over");
    assert_eq!(env.sim.hits(1), 1);
    assert_eq!(set("bogus").await.expect("admin").status(), 400);
    assert!(set("none").await.expect("admin").status().is_success());
    assert_eq!(env.sim.fault(0), Fault::None);
}

#[tokio::test]
async fn client_configuration_is_checked() {
    let env = start().await;
    let bad = |cfg: ClientConfig| matches!(FrotelClient::new(cfg), Err(Error::Config(_)));
    let base = common::config(&env.urls);
    assert!(bad(ClientConfig {
        api_key: " ".into(),
        ..base.clone()
    }));
    assert!(bad(ClientConfig {
        mirrors: vec![],
        ..base.clone()
    }));
    assert!(bad(ClientConfig {
        mirrors: vec!["not a url".into()],
        ..base.clone()
    }));
    assert!(bad(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        ..base.clone()
    }));
    // A base URL without its trailing slash still resolves method paths under it.
    let no_slash = env.urls[2].trim_end_matches('/').to_owned();
    let c = FrotelClient::new(ClientConfig {
        mirrors: vec![no_slash],
        ..base
    })
    .expect("client");
    c.get_prices(&prices()).await.expect("prices");
    assert_eq!(env.sim.method_hits(2, paths::GET_PRICES), 1);
}
