use orderbus_frotel::sim::{SimConfig, Simulator};
use orderbus_frotel::{
    Address, BasketItem, BuyType, Buyer, ClientConfig, FrotelClient, Gender, PhysicalOrder,
    SendType, ServiceOrder, VirtualOrder,
};
use std::time::Duration;

pub const KEY: &str = "sim-api-key";

pub struct Env {
    pub sim: Simulator,
    pub urls: Vec<String>,
}

pub async fn start() -> Env {
    start_with(SimConfig::default()).await
}

pub async fn start_with(cfg: SimConfig) -> Env {
    let sim = Simulator::new(cfg);
    let urls = sim.spawn_local().await.expect("bind simulator mirrors");
    Env { sim, urls }
}

pub fn config(urls: &[String]) -> ClientConfig {
    ClientConfig {
        mirrors: urls.to_vec(),
        connect_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        unhealthy_for: Duration::from_secs(600),
        ..ClientConfig::new(KEY)
    }
}

pub fn client(urls: &[String]) -> FrotelClient {
    FrotelClient::new(config(urls)).expect("client")
}

/// A base URL on which nothing listens (connection refused).
pub fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/")
}

pub fn buyer() -> Buyer {
    Buyer {
        name: "علی".into(),
        family: "رضایی".into(),
        phone: "02188888888".into(),
        mobile: "09120000000".into(),
        gender: Gender::Male,
        email: Some("ali@example.ir".into()),
    }
}

pub fn address() -> Address {
    Address {
        address: "تهران، خیابان آزادی، پلاک ۱".into(),
        code_posti: "1234567890".into(),
        province: 8,
        city: 301,
    }
}

pub fn item() -> BasketItem {
    BasketItem::new("mobile888", "موبایل اسمبلی", 670_000, 1, 200)
}

pub fn physical(buy_type: BuyType) -> PhysicalOrder {
    PhysicalOrder::new(
        buyer(),
        address(),
        buy_type,
        SendType::Pishtaz,
        vec![item()],
    )
}

pub fn virtual_order() -> VirtualOrder {
    VirtualOrder {
        buyer: buyer(),
        ip: "10.0.0.7".into(),
        pm: String::new(),
        basket: vec![BasketItem::new("ebook-1", "کتاب الکترونیکی", 150_000, 1, 0)],
    }
}

pub fn service_order() -> ServiceOrder {
    ServiceOrder {
        buyer: buyer(),
        address: address(),
        ip: None,
        pm: Some("لطفاً تماس بگیرید".into()),
        basket: vec![BasketItem::new("install-1", "نصب", 500_000, 2, 0)],
    }
}

/// Wait (upper bound 5 s) until a base URL accepts TCP connections again.
pub async fn wait_listening(url: &str) {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} did not come back");
}

/// Wait (upper bound 5 s) until a base URL refuses TCP connections (a `Fault::Down` took effect).
pub async fn wait_refusing(url: &str) {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} still accepts connections");
}
