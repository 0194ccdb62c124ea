//! The simulated web-service methods (the mirrors' fallback handler).

use super::{
    jalali, status, Fault, MirrorCtx, OrderKind, Payment, PaymentState, SimConfig, SimOrder,
    Simulator,
};
use crate::form::{self, FormTree};
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

type Refusal = (i64, String);
type Reply = Result<Value, Refusal>;

const METHODS: [&str; 9] = [
    "order/getPrices.json",
    "order/registerOrder.json",
    "order/registerOrderVirtual.json",
    "order/registerOrderService.json",
    "payment/pay.json",
    "payment/checkPay.json",
    "order/orderPay.json",
    "payment/continuePay.json",
    "order/tracking.json",
];

pub(super) async fn handle(
    State(ctx): State<MirrorCtx>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sim = &ctx.sim;
    let cfg = sim.config();
    let rel = uri.path().trim_start_matches('/');
    let key = rel.to_ascii_lowercase();
    {
        let mut data = sim.data();
        if let Some(m) = data.hits.get_mut(ctx.index) {
            *m.entry(key.clone()).or_insert(0) += 1;
        }
    }
    let fault = sim.fault(ctx.index);
    match fault {
        Fault::Down => return abort(),
        Fault::ServerError => return server_error(),
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body>Warning: mysql_connect(): Too many connections</body></html>",
            )
                .into_response()
        }
        Fault::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }

    let canonical = METHODS.iter().copied().find(|m| {
        if cfg.case_insensitive_paths {
            m.eq_ignore_ascii_case(rel)
        } else {
            *m == rel
        }
    });
    let (status_code, reply) = match canonical {
        None => (
            StatusCode::NOT_FOUND,
            Err((cfg.codes.unknown_method, format!("متد {rel} وجود ندارد"))),
        ),
        Some(_) if method != Method::POST => (
            StatusCode::METHOD_NOT_ALLOWED,
            Err((
                cfg.codes.unknown_method,
                "فقط درخواست POST پذیرفته می‌شود".to_owned(),
            )),
        ),
        Some(m) => {
            let form = form::decode(&body);
            let base = base_url(cfg, &headers, &original, &uri);
            (StatusCode::OK, process(sim, m, &form, &base))
        }
    };
    let envelope = match reply {
        Ok(result) => json!({"code": 0, "message": "", "result": result}),
        Err((code, message)) => json!({"code": code, "message": message, "result": Value::Null}),
    };

    match fault {
        Fault::ServerErrorAfterProcessing => return server_error(),
        Fault::DropAfterProcessing => return abort(),
        Fault::SlowAfterProcessing(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let mut resp = (status_code, axum::Json(envelope)).into_response();
    if cfg.close_connections {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A response whose body fails immediately: hyper tears the connection down, so the client
/// sees the connection die after its request was sent.
fn abort() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated connection drop",
        ))
    });
    Response::new(Body::from_stream(stream))
}

fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><body><h1>500 Internal Server Error</h1></body></html>",
    )
        .into_response()
}

fn base_url(cfg: &SimConfig, headers: &HeaderMap, original: &Uri, uri: &Uri) -> String {
    if let Some(b) = &cfg.public_base_url {
        return if b.ends_with('/') {
            b.clone()
        } else {
            format!("{b}/")
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    // When nested, the original path is "<prefix><relative path>".
    let prefix = original
        .path()
        .strip_suffix(uri.path())
        .unwrap_or("")
        .trim_end_matches('/');
    format!("http://{host}{prefix}/")
}

fn process(sim: &Simulator, method: &str, form: &FormTree, base: &str) -> Reply {
    let cfg = sim.config();
    match form.get("api").and_then(FormTree::as_str) {
        Some(k) if k == cfg.api_key => {}
        _ => return Err((cfg.codes.api_key, "کلید API نامعتبر است".into())),
    }
    match method {
        "order/getPrices.json" => get_prices(cfg, form),
        "order/registerOrder.json" => register(sim, OrderKind::Product, form),
        "order/registerOrderVirtual.json" => register(sim, OrderKind::Virtual, form),
        "order/registerOrderService.json" => register(sim, OrderKind::Service, form),
        "payment/pay.json" | "payment/continuePay.json" => pay(sim, form, base),
        "payment/checkPay.json" => check_pay(sim, form, base),
        "order/orderPay.json" => order_pay(sim, form),
        _ => tracking(sim, form, base),
    }
}

// --- field helpers -----------------------------------------------------------------------------

struct Fields<'a> {
    cfg: &'a SimConfig,
    node: &'a FormTree,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn new(cfg: &'a SimConfig, node: &'a FormTree, prefix: String) -> Self {
        Fields { cfg, node, prefix }
    }

    fn label(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}[{key}]", self.prefix)
        }
    }

    fn raw(&self, key: &str) -> Option<&'a str> {
        self.node.get(key).and_then(FormTree::as_str)
    }

    fn required(&self, key: &str) -> Refusal {
        (
            self.cfg.codes.required,
            format!("فیلد {} الزامی است", self.label(key)),
        )
    }

    fn invalid(&self, key: &str) -> Refusal {
        (
            self.cfg.codes.invalid,
            format!("مقدار فیلد {} نامعتبر است", self.label(key)),
        )
    }

    fn string(&self, key: &str) -> Result<String, Refusal> {
        match self.raw(key) {
            Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
            _ => Err(self.required(key)),
        }
    }

    fn int(&self, key: &str) -> Result<i64, Refusal> {
        let s = self
            .raw(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.required(key))?;
        s.trim().parse().map_err(|_| self.invalid(key))
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>, Refusal> {
        match self.raw(key).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s.trim().parse().map(Some).map_err(|_| self.invalid(key)),
        }
    }

    fn opt_percent(&self, key: &str) -> Result<f64, Refusal> {
        match self.raw(key).filter(|s| !s.is_empty()) {
            None => Ok(0.0),
            Some(s) => match s.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(p),
                _ => Err(self.invalid(key)),
            },
        }
    }

    fn one_of(&self, key: &str, allowed: &[i64]) -> Result<i64, Refusal> {
        let v = self.int(key)?;
        if allowed.contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(key))
        }
    }

    fn flag(&self, key: &str) -> Result<bool, Refusal> {
        match self.opt_int(key)? {
            None | Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(_) => Err(self.invalid(key)),
        }
    }

    /// A PHP array field (or a lone scalar) of integers.
    fn int_list(&self, key: &str) -> Result<Vec<i64>, Refusal> {
        let node = self.node.get(key).ok_or_else(|| self.required(key))?;
        let leaves: Vec<&str> = match node {
            FormTree::Leaf(s) => vec![s.as_str()],
            FormTree::Node(_) => node
                .items()
                .into_iter()
                .filter_map(FormTree::as_str)
                .collect(),
            FormTree::Empty => Vec::new(),
        };
        if leaves.is_empty() {
            return Err(self.required(key));
        }
        leaves
            .into_iter()
            .map(|s| s.trim().parse().map_err(|_| self.invalid(key)))
            .collect()
    }
}

// --- getPrices ---------------------------------------------------------------------------------

/// `(post, tax, frotel_service)` for one combination, or `None` without a tariff.
fn quote(cfg: &SimConfig, send_type: i64, weight: i64, cod: bool) -> Option<(i64, i64, i64)> {
    let rate = cfg.rates.iter().find(|r| r.send_type == send_type)?;
    let extra_steps = (weight.max(0).saturating_sub(500) / 500)
        .saturating_add(i64::from(weight % 500 != 0 && weight > 500));
    let post = rate
        .first_500g
        .saturating_add(rate.per_extra_500g.saturating_mul(extra_steps))
        .saturating_add(if cod { rate.cod_extra } else { 0 });
    let tax = post.saturating_mul(cfg.tax_percent).saturating_add(50) / 100;
    Some((post, tax, cfg.frotel_service))
}

fn get_prices(cfg: &SimConfig, form: &FormTree) -> Reply {
    let f = Fields::new(cfg, form, String::new());
    let des_city = f.int("des_city")?;
    if des_city <= 0 {
        return Err(f.invalid("des_city"));
    }
    let price = f.int("price")?;
    let weight = f.int("weight")?;
    if price < 0 {
        return Err(f.invalid("price"));
    }
    if weight < 0 {
        return Err(f.invalid("weight"));
    }
    let send_types = f.int_list("send_type")?;
    let buy_types = f.int_list("buy_type")?;
    if send_types.iter().any(|s| !(1..=4).contains(s)) {
        return Err(f.invalid("send_type"));
    }
    if buy_types.iter().any(|b| !(1..=2).contains(b)) {
        return Err(f.invalid("buy_type"));
    }
    let mut result = serde_json::Map::new();
    for (name, code) in [("naghdi", 2), ("posti", 1)] {
        if !buy_types.contains(&code) {
            continue;
        }
        let mut group = serde_json::Map::new();
        for s in &send_types {
            let Some((post, tax, service)) = quote(cfg, *s, weight, code == 1) else {
                return Err(f.invalid("send_type"));
            };
            group.insert(
                s.to_string(),
                json!({"post": post, "tax": tax, "frotel_service": service}),
            );
        }
        result.insert(name.to_owned(), Value::Object(group));
    }
    Ok(Value::Object(result))
}

// --- registerOrder* ----------------------------------------------------------------------------

struct Item {
    pro_code: String,
    name: String,
    price: i64,
    count: i64,
    weight: i64,
    free_send: bool,
    net: i64,
}

fn basket(cfg: &SimConfig, form: &FormTree) -> Result<Vec<Item>, Refusal> {
    let node = match form.get("basket") {
        Some(n @ FormTree::Node(_)) => n,
        _ => return Err((cfg.codes.basket, "سبد خرید خالی است".into())),
    };
    let mut out = Vec::new();
    for (i, it) in node.items().into_iter().enumerate() {
        let f = Fields::new(cfg, it, format!("basket[{i}]"));
        let basket_err = |r: Refusal| (cfg.codes.basket, r.1);
        let price = f.int("price").map_err(basket_err)?;
        let count = f.int("count").map_err(basket_err)?;
        let weight = f.int("weight").map_err(basket_err)?;
        if price < 0 {
            return Err(basket_err(f.invalid("price")));
        }
        if count < 1 {
            return Err(basket_err(f.invalid("count")));
        }
        if weight < 0 {
            return Err(basket_err(f.invalid("weight")));
        }
        let discount = f.opt_percent("discount").map_err(basket_err)?;
        let tax = f.opt_percent("tax").map_err(basket_err)?;
        f.opt_percent("porsant").map_err(basket_err)?;
        let gross = price.saturating_mul(count) as f64;
        let after_discount = gross * (100.0 - discount) / 100.0;
        let net = (after_discount * (100.0 + tax) / 100.0).round() as i64;
        out.push(Item {
            pro_code: f.string("pro_code").map_err(basket_err)?,
            name: f.string("name").map_err(basket_err)?,
            price,
            count,
            weight,
            free_send: f.flag("free_send").map_err(basket_err)?,
            net,
        });
    }
    if out.is_empty() {
        return Err((cfg.codes.basket, "سبد خرید خالی است".into()));
    }
    Ok(out)
}

fn cheetah(cfg: &SimConfig, f: &Fields<'_>) -> Result<(), Refusal> {
    let ch = |r: Refusal| (cfg.codes.cheetah, r.1);
    match f.one_of("cheeta_package_type", &[1, 2]).map_err(ch)? {
        2 => {
            let e = f.int("cheeta_envelopes_type").map_err(ch)?;
            if !(901..=911).contains(&e) {
                return Err(ch(f.invalid("cheeta_envelopes_type")));
            }
        }
        _ => {
            let c = f.int("category_section").map_err(ch)?;
            if !(1..=6).contains(&c) {
                return Err(ch(f.invalid("category_section")));
            }
            for k in ["cheeta_length", "cheeta_width", "cheeta_height"] {
                if f.int(k).map_err(ch)? <= 0 {
                    return Err(ch(f.invalid(k)));
                }
            }
        }
    }
    Ok(())
}

fn register(sim: &Simulator, kind: OrderKind, form: &FormTree) -> Reply {
    let cfg = sim.config();
    let f = Fields::new(cfg, form, String::new());
    let name = f.string("name")?;
    let family = f.string("family")?;
    f.string("phone")?;
    f.string("mobile")?;
    f.one_of("gender", &[0, 1])?;
    if kind != OrderKind::Virtual {
        f.string("address")?;
        f.string("code_posti")?;
        for k in ["province", "city"] {
            if f.int(k)? <= 0 {
                return Err(f.invalid(k));
            }
        }
    } else {
        f.string("ip")?;
        if f.raw("pm").is_none() {
            return Err(f.required("pm"));
        }
    }
    let (buy_type, send_type) = if kind == OrderKind::Product {
        (
            f.one_of("buy_type", &[1, 2, 3])?,
            f.one_of("send_type", &[1, 2, 11, 20])?,
        )
    } else {
        (2, 0)
    };
    let items = basket(cfg, form)?;
    let goods: i64 = items.iter().fold(0i64, |a, i| a.saturating_add(i.net));
    let mut shipping = 0;
    if kind == OrderKind::Product {
        if send_type == 11 {
            cheetah(cfg, &f)?;
        }
        let post_price = f.opt_int("post_price")?;
        let order_free = f.flag("free_send")?;
        let items_free = items.iter().all(|i| i.free_send);
        let weight: i64 = items.iter().fold(0i64, |a, i| {
            a.saturating_add(i.weight.saturating_mul(i.count))
        });
        shipping = if order_free || items_free {
            0
        } else if send_type == 20 {
            match post_price {
                Some(p) if p >= 0 => p,
                Some(_) => return Err(f.invalid("post_price")),
                None => return Err(f.required("post_price")),
            }
        } else {
            let (post, tax, service) = quote(cfg, send_type, weight, buy_type == 1)
                .ok_or_else(|| f.invalid("send_type"))?;
            post.saturating_add(tax).saturating_add(service)
        };
    }
    if kind == OrderKind::Virtual {
        if let Some(i) = items
            .iter()
            .find(|i| cfg.virtual_without_file.contains(&i.pro_code))
        {
            return Err((
                cfg.codes.no_file,
                format!("برای محصول {} فایلی آپلود نشده است", i.pro_code),
            ));
        }
    }
    let discount = f.opt_int("discount")?.unwrap_or(0).max(0);
    let total = goods
        .saturating_add(shipping)
        .saturating_sub(discount)
        .max(0);
    let now = jalali::now_text();

    let mut data = sim.data();
    data.next_factor += 1;
    let factor = format!("{}{:018}", cfg.factor_prefix, data.next_factor);
    let order = SimOrder {
        factor: factor.clone(),
        kind,
        buy_type,
        send_type,
        customer: format!("{name} {family}"),
        shop_barcode: f.raw("shop_barcode").map(str::to_owned),
        total,
        shipping,
        paid: if buy_type == 3 { total } else { 0 },
        status: if buy_type == 2 && total > 0 {
            status::PENDING
        } else {
            status::PROCESSING
        }
        .to_owned(),
        barcode: String::new(),
        date: now.clone(),
        change_date: now,
        items: items
            .iter()
            .map(|i| {
                (
                    i.pro_code.clone(),
                    i.name.clone(),
                    i.price,
                    i.count,
                    i.weight,
                )
            })
            .collect(),
    };
    data.orders.insert(factor.clone(), order);
    drop(data);

    let rows: String = items
        .iter()
        .map(|i| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                i.name, i.count, i.price
            )
        })
        .collect();
    let mut factor_json = json!({
        "id": factor,
        "view": format!("<table class=\"frotel-factor\">{rows}<tr><td>جمع کل</td><td colspan=\"2\">{total}</td></tr></table>"),
        "total": total,
    });
    if buy_type == 2 {
        let banks: Vec<Value> = if cfg.offer_banks && total > 0 {
            cfg.banks
                .iter()
                .map(|b| json!({"id": b.id, "name": b.name, "icon": b.logo}))
                .collect()
        } else {
            Vec::new()
        };
        factor_json["banks"] = Value::Array(banks);
    }
    let items_json: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({"name": i.name, "num": i.count, "price": i.price, "pro_code": i.pro_code,
                   "weight": i.weight, "option": ""})
        })
        .collect();
    Ok(json!({"factor": factor_json, "items": items_json}))
}

// --- payments ----------------------------------------------------------------------------------

fn factor_key(f: &Fields<'_>) -> Result<String, Refusal> {
    let raw = f.string("factor")?;
    let key: String = raw.chars().filter(|c| *c != '-').collect();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(f.invalid("factor"));
    }
    Ok(key)
}

fn not_found(cfg: &SimConfig) -> Refusal {
    (
        cfg.codes.not_found,
        "سفارشی با این شماره فاکتور یافت نشد".into(),
    )
}

fn pay(sim: &Simulator, form: &FormTree, base: &str) -> Reply {
    let cfg = sim.config();
    let f = Fields::new(cfg, form, String::new());
    let factor = factor_key(&f)?;
    let bank_id = f.int("bank")?;
    let callback = f.string("callback")?;
    if !(callback.starts_with("http://") || callback.starts_with("https://")) {
        return Err(f.invalid("callback"));
    }
    let bank = cfg.banks.iter().find(|b| b.id == bank_id).ok_or_else(|| {
        (
            cfg.codes.bank,
            "درگاه بانکی انتخاب شده معتبر نیست".to_owned(),
        )
    })?;
    let mut data = sim.data();
    let order = data.orders.get(&factor).ok_or_else(|| not_found(cfg))?;
    let remainder = order.total.saturating_sub(order.paid);
    if order.buy_type != 2 || remainder <= 0 {
        return Err((
            cfg.codes.payment_state,
            "این سفارش نیازی به پرداخت آنلاین ندارد".into(),
        ));
    }
    data.next_payment += 1;
    let id = data.next_payment;
    let reference = format!(
        "{:012}",
        rand::random_range(100_000_000_000u64..999_999_999_999u64)
    );
    data.payments.insert(
        id,
        Payment {
            factor,
            bank: bank_id,
            callback,
            reference,
            amount: remainder,
            state: PaymentState::Pending,
            tracking_code: None,
            links: Vec::new(),
        },
    );
    Ok(Value::String(format!(
        "<form id=\"frotel-bank-redirect\" method=\"post\" action=\"{base}__sim/bank/{id}\">\
         <input type=\"hidden\" name=\"payment\" value=\"{id}\" />\
         <input type=\"submit\" value=\"انتقال به درگاه {}\" /></form>",
        bank.long_name
    )))
}

fn check_pay(sim: &Simulator, form: &FormTree, base: &str) -> Reply {
    let cfg = sim.config();
    let f = Fields::new(cfg, form, String::new());
    let payment_id = f.int("paymentId")?;
    let reference = f.string("ref")?;
    let factor = factor_key(&f)?;
    let mut data = sim.data();
    let payment = data.payments.get(&payment_id).cloned().ok_or_else(|| {
        (
            cfg.codes.not_found,
            "پرداختی با این شناسه یافت نشد".to_owned(),
        )
    })?;
    if payment.factor != factor || payment.reference != reference {
        return Err((
            cfg.codes.payment_mismatch,
            "اطلاعات پرداخت با سفارش مطابقت ندارد".into(),
        ));
    }
    let failed =
        |msg: &str| json!({"id": payment_id.to_string(), "verify": 0, "message": msg, "code": ""});
    match payment.state {
        PaymentState::Pending => return Ok(failed("پرداخت توسط خریدار تکمیل نشده است")),
        PaymentState::BankFailed => return Ok(failed("تراکنش ناموفق بود")),
        PaymentState::BankOk | PaymentState::Verified => {}
    }
    let payment = if payment.state == PaymentState::BankOk {
        let code = format!(
            "{:012}",
            rand::random_range(100_000_000_000u64..999_999_999_999u64)
        );
        let now = jalali::now_text();
        let mut links = Vec::new();
        if let Some(order) = data.orders.get_mut(&factor) {
            order.paid = order.paid.saturating_add(payment.amount);
            if order.paid >= order.total && order.status == status::PENDING {
                order.status = status::PROCESSING.to_owned();
            }
            order.change_date = now;
            if order.kind == OrderKind::Virtual && !cfg.virtual_links_fail {
                for (pro_code, name, ..) in order.items.clone() {
                    let token = format!("{:016x}", rand::random::<u64>());
                    let file = format!("{pro_code}.pdf");
                    links.push(json!({
                        "name": name, "size": "200 KB", "mime": "pdf", "count": "بدون محدودیت",
                        "expire": jalali::in_days_text(7),
                        "link": format!("{base}__sim/download/{token}"),
                    }));
                    data.downloads
                        .insert(token, (file, format!("simulated file for {pro_code}")));
                }
            }
        }
        let entry = data.payments.entry(payment_id).or_insert(payment);
        entry.state = PaymentState::Verified;
        entry.tracking_code = Some(code);
        entry.links = links;
        entry.clone()
    } else {
        payment
    };
    let mut result = json!({
        "id": payment_id.to_string(),
        "verify": 1,
        "message": "تراکنش باموفقیت انجام شد",
        "code": payment.tracking_code.clone().unwrap_or_default(),
    });
    let is_virtual = data
        .orders
        .get(&factor)
        .is_some_and(|o| o.kind == OrderKind::Virtual);
    if is_virtual {
        result["links"] = if cfg.virtual_links_fail {
            json!({"error": 1, "message": "خطا در ایجاد لینک دانلود"})
        } else {
            json!({"error": 0, "message": payment.links})
        };
    }
    Ok(result)
}

fn show_factor(cfg: &SimConfig, factor: &str) -> String {
    if cfg.hyphenate_factor && factor.len() == 20 {
        format!(
            "{}-{}-{}-{}",
            &factor[..2],
            &factor[2..8],
            &factor[8..14],
            &factor[14..]
        )
    } else {
        factor.to_owned()
    }
}

fn order_pay(sim: &Simulator, form: &FormTree) -> Reply {
    let cfg = sim.config();
    let f = Fields::new(cfg, form, String::new());
    let factor = factor_key(&f)?;
    let order = sim.order(&factor).ok_or_else(|| not_found(cfg))?;
    let remainder = order.total.saturating_sub(order.paid).max(0);
    let banks: Vec<Value> = if order.buy_type == 2 && remainder > 0 {
        cfg.banks
            .iter()
            .map(|b| json!({"id": b.id, "name": b.long_name, "logo": b.logo}))
            .collect()
    } else {
        Vec::new()
    };
    Ok(json!({
        "vaziat": order.status,
        "factor": show_factor(cfg, &order.factor),
        "barcode": order.barcode,
        "order_type": match order.kind {
            OrderKind::Product => "product",
            OrderKind::Virtual => "virtual",
            OrderKind::Service => "service",
        },
        "price": order.total,
        "remainder_price": remainder,
        "pay_price": order.paid,
        "banks": banks,
    }))
}

fn tracking(sim: &Simulator, form: &FormTree, base: &str) -> Reply {
    let cfg = sim.config();
    let f = Fields::new(cfg, form, String::new());
    let factor = factor_key(&f)?;
    let order = sim.order(&factor).ok_or_else(|| not_found(cfg))?;
    let shipped = order.status == status::SHIPPED || order.status == status::DELIVERED;
    let seller = if shipped {
        json!([{"name": "فروشگاه آزمایشی", "phone": "02100000000"}])
    } else {
        json!([])
    };
    let payment = if order.buy_type == 2 && order.paid < order.total {
        json!({
            "message": "پرداخت شما انجام نشده است.",
            "pay_link": format!("{base}payment/ContinuePay?factor={}", order.factor),
        })
    } else {
        json!([])
    };
    Ok(json!({
        "customer": order.customer,
        "order": {
            "factor": show_factor(cfg, &order.factor),
            "barcode": order.barcode,
            "status": order.status,
            "date": order.date,
            "change_date": order.change_date,
            "price": order.total,
            "buy_type": if order.buy_type == 1 { 0 } else { 1 },
            "desc": "",
            "type": match order.kind {
                OrderKind::Product => 1,
                OrderKind::Virtual => 2,
                OrderKind::Service => 3,
            },
        },
        "seller": seller,
        "payment": payment,
    }))
}
