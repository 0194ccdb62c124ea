//! Seed 003's rules: Cheetah parcel and envelope, every free_send case, and invalid inputs
//! refused before any call with a message naming the field.

use crate::common::*;

async fn registered_sim_order(
    h: &Harness,
    code: i64,
) -> anyhow::Result<orderbus_frotel::sim::SimOrder> {
    h.factor(code).await?;
    h.sim_orders_for(code)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("order {code} not at the simulator"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cheetah_parcels_envelopes_and_free_shipping() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let one =
        |code, wh, goods: &[(i64, i64, &str)]| submit_body(code, wh, "cash_on_delivery", goods);

    let parcel = order_code();
    h.submit(&one(parcel, h.wh.cheetah_parcel, &[(123, 1, "200000.00")]))
        .await?;
    let envelope = order_code();
    h.submit(&one(
        envelope,
        h.wh.cheetah_envelope,
        &[(123, 1, "200000.00")],
    ))
    .await?;
    assert_eq!(registered_sim_order(&h, parcel).await?.send_type, 11);
    assert_eq!(registered_sim_order(&h, envelope).await?.send_type, 11);

    // Every item free → free; one item not free → charged; order-level → free; above the
    // threshold → free, below → charged.
    let all_free = order_code();
    h.submit(&one(
        all_free,
        h.wh.plain,
        &[(SKU_FREE, 1, "100000.00"), (SKU_FREE, 2, "100000.00")],
    ))
    .await?;
    let one_not_free = order_code();
    h.submit(&one(
        one_not_free,
        h.wh.plain,
        &[(SKU_FREE, 1, "100000.00"), (SKU_NOT_FREE, 1, "100000.00")],
    ))
    .await?;
    let order_level = order_code();
    h.submit(&one(
        order_level,
        h.wh.free,
        &[(SKU_NOT_FREE, 1, "100000.00")],
    ))
    .await?;
    let above = order_code();
    h.submit(&one(above, h.wh.free_above, &[(123, 2, "600000.00")]))
        .await?;
    let below = order_code();
    h.submit(&one(below, h.wh.free_above, &[(123, 1, "600000.00")]))
        .await?;
    assert_eq!(registered_sim_order(&h, all_free).await?.shipping, 0);
    assert!(registered_sim_order(&h, one_not_free).await?.shipping > 0);
    assert_eq!(registered_sim_order(&h, order_level).await?.shipping, 0);
    assert_eq!(registered_sim_order(&h, above).await?.shipping, 0);
    assert!(registered_sim_order(&h, below).await?.shipping > 0);
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_orders_are_refused_before_any_call_naming_the_field() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let hits_before = h.sim.total_hits();
    let mut cases = Vec::new();

    let code = order_code();
    let mut b = submit_body(code, h.wh.plain, "cash_on_delivery", &[(123, 1, "1000.00")]);
    b["delivery_address"]["city"] = "Atlantis".into();
    cases.push((code, b, "delivery_address.city"));

    let code = order_code();
    let mut b = submit_body(code, h.wh.plain, "cash_on_delivery", &[(123, 1, "1000.00")]);
    b["delivery_address"]["zip_code"] = "".into();
    cases.push((code, b, "delivery_address.zip_code"));

    let code = order_code();
    let b = submit_body(
        code,
        h.wh.cheetah_broken,
        "cash_on_delivery",
        &[(123, 1, "1000.00")],
    );
    cases.push((code, b, "cheeta_envelopes_type"));

    let code = order_code();
    let b = submit_body(code, h.wh.plain, "cash_on_delivery", &[(123, 1, "1000.50")]);
    cases.push((code, b, "goods[0].last_price"));

    let code = order_code();
    let b = submit_body(
        code,
        h.wh.virtual_goods,
        "cash_on_delivery",
        &[(SKU_VIRTUAL, 1, "1000.00")],
    );
    cases.push((code, b, "payment_channel"));

    let code = order_code();
    let b = submit_body(
        code,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 1, "1000.00"), (SKU_SERVICE, 1, "1000.00")],
    );
    cases.push((code, b, "goods[1].product_sku"));

    let code = order_code();
    let b = submit_body(
        code,
        h.wh.bare,
        "cash_on_delivery",
        &[(SKU_NO_WEIGHT, 1, "1000.00")],
    );
    cases.push((code, b, "goods[0].weight"));

    for (_, body, _) in &cases {
        h.submit(body).await?;
    }
    for (code, _, field) in &cases {
        let v = h.wait_state(*code, "invalid").await?;
        let err = v["last_error"].as_str().unwrap_or_default();
        assert!(
            err.starts_with(field),
            "order {code}: expected {field}, got {err}"
        );
        assert!(v["what_to_check"].is_string());
    }
    assert_eq!(
        h.sim.total_hits(),
        hits_before,
        "nothing was sent to Frotel"
    );
    let (s, attention) = h.get("/fulfilment/ops/attention").await?;
    assert_eq!(s, 200);
    let listed = attention["orders"].as_array().map(Vec::len).unwrap_or(0);
    assert!(listed >= cases.len(), "{attention}");
    h.stop().await
}
