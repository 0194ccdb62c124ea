//! `orderbus-fulfilment-bench`: Frotel quote latency with all mirrors up and with the first
//! mirror down (refused), and the registration round trip (order.submit on the broker → factor
//! stored), each against a bare baseline measured in the same run (a plain form POST to the
//! simulator, a direct client call). A measurement tool, not a test: nothing asserts a speed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use orderbus_frotel::sim::{Fault, SimConfig, Simulator};
use orderbus_frotel::{
    Address, BasketItem, BuyType, Buyer, ClientConfig, FrotelClient, Gender, PhysicalOrder,
    PriceRequest, SendType,
};
use orderbus_fulfilment::{start, Mapping, Settings};
use orderbus_runtime::{CancellationToken, Config, Secret};
use orderbus_testkit::{unique_suffix, ErpPublisher, RouteSink, TestDb};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "orderbus-fulfilment-bench",
    about = "Frotel quote latency (all mirrors up / first mirror down) and registration round trip, vs bare baselines"
)]
struct Args {
    /// Quote calls per measurement.
    #[arg(long, default_value_t = 300)]
    quotes: usize,
    /// Registrations per measurement.
    #[arg(long, default_value_t = 50)]
    registrations: usize,
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn report(name: &str, v: &[f64], baseline: f64) -> f64 {
    let p50 = pct(v.to_vec(), 0.5);
    let p99 = pct(v.to_vec(), 0.99);
    println!(
        "{name:<58} p50 {p50:>8.3} ms  p99 {p99:>8.3} ms  ({:.2}x baseline p50)",
        p50 / baseline.max(1e-9)
    );
    p50
}

async fn timed<F, Fut, T>(n: usize, mut f: F) -> Result<Vec<f64>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn client(mirrors: &[String]) -> Result<FrotelClient> {
    let mut c = ClientConfig::new("sim-api-key");
    c.mirrors = mirrors.to_vec();
    c.connect_timeout = Duration::from_millis(500);
    c.read_timeout = Duration::from_secs(3);
    c.request_timeout = Duration::from_secs(5);
    Ok(FrotelClient::new(c)?)
}

fn order(i: usize) -> PhysicalOrder {
    let mut o = PhysicalOrder::new(
        Buyer {
            name: "Ali".into(),
            family: "Rezaei".into(),
            phone: "09121234567".into(),
            mobile: "09121234567".into(),
            gender: Gender::Male,
            email: None,
        },
        Address {
            address: "Azadi 12".into(),
            code_posti: "1234567890".into(),
            province: 8,
            city: 301,
        },
        BuyType::Cod,
        SendType::Pishtaz,
        vec![BasketItem::new("p1", "item", 670_000, 1, 200)],
    );
    o.shop_barcode = Some(format!("bench-{i}"));
    o
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // The service in process logs every request; keep the report readable.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let sim = Simulator::new(SimConfig::default());
    let mirrors = sim.spawn_local().await?;
    let price = PriceRequest {
        des_city: 301,
        price: 670_000,
        weight: 200,
        send_types: vec![SendType::Pishtaz, SendType::Sefareshi],
        buy_types: vec![BuyType::Cod, BuyType::OnlineCash],
    };

    // Baseline: the same form body POSTed with plain reqwest to the first mirror.
    let http = reqwest::Client::new();
    let body = "des_city=301&price=670000&weight=200&buy_type%5B0%5D=1&buy_type%5B1%5D=2&send_type%5B0%5D=1&send_type%5B1%5D=2&api=sim-api-key";
    let url = format!("{}order/getPrices.json", mirrors[0]);
    let bare = timed(args.quotes, |_| {
        let req = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let r = req.send().await?;
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "Frotel quotes ({} calls each, simulator on 127.0.0.1)",
        args.quotes
    );
    let base = pct(bare.clone(), 0.5);
    report("bare form POST to mirror 1 (baseline)", &bare, base);

    let c = client(&mirrors)?;
    let up = timed(args.quotes, |_| {
        let c = c.clone();
        let p = price.clone();
        async move { Ok(c.get_prices(&p).await?) }
    })
    .await?;
    report("client getPrices, all mirrors up", &up, base);

    sim.set_fault(0, Fault::Down);
    let cold = timed(args.quotes, |_| {
        let c = c.clone();
        let p = price.clone();
        async move {
            c.reset_mirror_health(); // every call meets the refused mirror first
            Ok(c.get_prices(&p).await?)
        }
    })
    .await?;
    report(
        "client getPrices, mirror 1 down, every call tries it",
        &cold,
        base,
    );
    let warm = timed(args.quotes, |_| {
        let c = c.clone();
        let p = price.clone();
        async move { Ok(c.get_prices(&p).await?) }
    })
    .await?;
    report(
        "client getPrices, mirror 1 down, breaker skips it",
        &warm,
        base,
    );
    sim.clear_faults();
    c.reset_mirror_health();

    // The service: HTTP quotes (no cache) and the registration round trip over the broker.
    let db = TestDb::create().await?;
    let warehouse =
        70_000_000 + (u64::from_str_radix(&unique_suffix()[..6], 16)? % 1_000_000) as i64;
    let mapping = Mapping::parse(
        &format!(
            "[warehouses.\"{warehouse}\"]\nsend_type = 1\ndefault_weight_g = 200\n[cities.\"Tehran\"]\nprovince = 8\ncity = 301\n"
        ),
        "bench.toml",
    )?;
    let mut frotel = ClientConfig::new("sim-api-key");
    frotel.mirrors = mirrors.clone();
    let settings = Settings {
        service_name: format!("fulfilment-bench-{}", unique_suffix()),
        frotel,
        mapping,
        quote_cache_ttl: Duration::ZERO,
        register_interval: Duration::from_millis(20),
        tracking_interval: Duration::from_secs(3600),
        ..Settings::default()
    };
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(db.url());
    config.http_addr = "127.0.0.1:0".parse()?;
    config.auth = orderbus_runtime::AuthSettings::open();
    let topology = orderbus_fulfilment::topology(&settings);
    let _sink = RouteSink::bind(&[
        "order.payment",
        "order.erpstatus",
        "order.updateExpressInfo",
    ])
    .await?;
    let shutdown = CancellationToken::new();
    let running = start(config, settings, shutdown.clone()).await?;
    let svc = format!("http://{}", running.addr());
    for _ in 0..200 {
        if http
            .get(format!("{svc}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quote_body = json!({"des_city": 301, "price": 670000, "weight": 200, "send_types": [1, 2], "buy_types": [1, 2]});
    let service_quotes = timed(args.quotes, |_| {
        let r = http
            .post(format!("{svc}/fulfilment/quotes"))
            .json(&quote_body);
        async move {
            let r = r.send().await?;
            if !r.status().is_success() {
                bail!("quote answered {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    report(
        "service POST /fulfilment/quotes (no cache), all up",
        &service_quotes,
        base,
    );

    println!("\nregistration ({} each)", args.registrations);
    let direct = timed(args.registrations, |i| {
        let c = c.clone();
        async move { Ok(c.register_order(&order(i)).await?) }
    })
    .await?;
    let rbase = pct(direct.clone(), 0.5);
    report("client registerOrder (baseline)", &direct, rbase);
    let erp = ErpPublisher::connect().await?;
    let first = 6_000_000_000_000
        + (u64::from_str_radix(&unique_suffix()[..8], 16)? % 1_000_000_000) as i64 * 1000;
    let round = timed(args.registrations, |i| {
        let code = first + i as i64;
        let body = json!({
            "uid": 1, "order_code": code, "create_time": 1764547200, "order_amount": "670000.00",
            "shipping_cost": "0.00",
            "delivery_address": {"user_name": "Ali Rezaei", "mobile": "09121234567",
                "province": "Tehran", "city": "Tehran", "district": "", "address": "Azadi 12",
                "zip_code": "1234567890", "email": ""},
            "goods": [{"product_sku": 1, "product_skn": 1, "warehouse_id": warehouse,
                "buy_number": 1, "last_price": "670000.00"}],
            "remark": "", "payment_channel": "cash_on_delivery"});
        let erp = &erp;
        let pool = db.pool().clone();
        async move {
            erp.publish("order.submit", body.to_string().as_bytes())
                .await?;
            for _ in 0..2000 {
                let f: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT factor_id FROM fulfilment_orders WHERE order_code = $1",
                )
                .bind(code)
                .fetch_optional(&pool)
                .await?;
                if matches!(f, Some(Some(_))) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            bail!("order {code} not registered")
        }
    })
    .await?;
    report(
        "order.submit on the broker → factor stored (round trip)",
        &round,
        rbase,
    );
    shutdown.cancel();
    running.wait().await.context("service stop")?;
    let cleanup = orderbus_testkit::connect_amqp().await?;
    let ch = cleanup.create_channel().await?;
    let _ = topology.remove(&ch, Duration::from_millis(500)).await;
    Ok(())
}
