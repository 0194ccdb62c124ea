//! The date-window splitter against the 300-row cap.

use chrono::{NaiveDate, NaiveDateTime};
use orderbus_sinopac::client::{split_window, ORDER_QUERY_ROW_CAP};
use orderbus_sinopac::sim::{OverCapBehaviour, SeedOrder, SimConfig, Simulator};
use orderbus_sinopac::{Amount, DateField, DateWindow, Error, OrderQuery, PayFlag, PayType};

use crate::common::{manual_config, setup};

fn t(h: u32, m: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 3, 1)
        .and_then(|d| d.and_hms_opt(h, m, 0))
        .expect("time")
}

/// `n` orders, one every `step` minutes from 00:00; every third one paid a minute later.
fn seed(sim: &Simulator, prefix: &str, n: u32, step: u32) {
    for i in 0..n {
        let created = t(0, 0) + chrono::Duration::minutes(i64::from(i * step));
        sim.seed_order(SeedOrder {
            shop_no: None,
            order_no: format!("{prefix}{i:05}"),
            amount: Amount::from_twd(u64::from(i) + 1).expect("amount"),
            pay_type: if i % 2 == 0 {
                PayType::Atm
            } else {
                PayType::Card
            },
            created_at: created,
            paid_at: (i % 3 == 0).then(|| created + chrono::Duration::minutes(1)),
        })
        .expect("seed");
    }
}

fn day() -> DateWindow {
    DateWindow {
        start: t(0, 0),
        end: t(23, 59),
    }
}

#[test]
fn split_is_exhaustive_and_disjoint() {
    let w = DateWindow {
        start: t(0, 0),
        end: t(0, 3),
    };
    let (l, r) = split_window(w).expect("split");
    assert_eq!(
        (l.start, l.end, r.start, r.end),
        (t(0, 0), t(0, 1), t(0, 2), t(0, 3))
    );
    let one = DateWindow {
        start: t(5, 5),
        end: t(5, 5),
    };
    assert!(split_window(one).is_none());
}

#[tokio::test]
async fn plain_query_is_capped_at_300() {
    let (sim, _base, client) = setup(manual_config()).await;
    seed(&sim, "W", 700, 2);
    let capped = client
        .order_query(&OrderQuery {
            order_date: Some(day()),
            ..OrderQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(capped.order_list.len(), ORDER_QUERY_ROW_CAP);
}

#[tokio::test]
async fn window_helper_returns_all_700_orders() {
    let (sim, _base, client) = setup(manual_config()).await;
    seed(&sim, "W", 700, 2);
    let rows = client
        .order_query_window(DateField::Order, day(), &OrderQuery::default())
        .await
        .expect("window");
    assert_eq!(rows.len(), 700);
    // In window order, each exactly once.
    let names: Vec<String> = rows.iter().map(|r| r.order_no.clone()).collect();
    let expected: Vec<String> = (0..700).map(|i| format!("W{i:05}")).collect();
    assert_eq!(names, expected);

    // Combined with another condition, on the pay date.
    let paid = client
        .order_query_window(
            DateField::Pay,
            day(),
            &OrderQuery {
                pay_flag: Some(PayFlag::Paid),
                ..OrderQuery::default()
            },
        )
        .await
        .expect("paid window");
    assert_eq!(paid.len(), 234); // i % 3 == 0 for i in 0..700
    assert!(paid.iter().all(|r| r.is_paid()));
}

#[tokio::test]
async fn window_helper_splits_when_the_bank_refuses_over_cap() {
    let cfg = SimConfig {
        over_cap: OverCapBehaviour::Fail,
        ..manual_config()
    };
    let (sim, _base, client) = setup(cfg).await;
    seed(&sim, "V", 650, 1);
    let r = client
        .order_query(&OrderQuery {
            order_date: Some(day()),
            ..OrderQuery::default()
        })
        .await;
    assert!(
        matches!(&r, Err(Error::Business { code, .. }) if code == "E0107"),
        "{r:?}"
    );
    let rows = client
        .order_query_window(DateField::Order, day(), &OrderQuery::default())
        .await
        .expect("window");
    assert_eq!(rows.len(), 650);
}

#[tokio::test]
async fn too_many_orders_in_one_minute_is_reported() {
    let (sim, _base, client) = setup(manual_config()).await;
    seed(&sim, "D", 301, 0);
    let r = client
        .order_query_window(DateField::Order, day(), &OrderQuery::default())
        .await;
    assert!(
        matches!(r, Err(Error::WindowTooDense { cap: 300, .. })),
        "{r:?}"
    );
}
