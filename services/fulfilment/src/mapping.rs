//! What Frotel needs that `order.submit` does not carry, as operator data (a TOML file): which
//! warehouses are Frotel's and how they ship, per-SKU kind/weight/free shipping, the Frotel
//! province/city ids of delivery cities, the buyer's gender, and the Rial conversion. Building a
//! Frotel request from an `order.submit` with it, checking every rule before anything is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use orderbus_contracts::{OrderSubmit, PaymentChannel};
use orderbus_frotel::{
    Address, BasketItem, BuyType, Buyer, CheetahDetails, Gender, PhysicalOrder, SendType,
    ServiceOrder, VirtualOrder,
};
use orderbus_tracking_vocabulary::normalise;
use serde::Deserialize;

/// Item kind: which `registerOrder*` method an order goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `registerOrder`.
    Physical,
    /// `registerOrderVirtual`.
    Virtual,
    /// `registerOrderService`.
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Physical => "physical",
            Kind::Virtual => "virtual",
            Kind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "physical" => Some(Kind::Physical),
            "virtual" => Some(Kind::Virtual),
            "service" => Some(Kind::Service),
            _ => None,
        }
    }
}

/// Cheetah (`send_type` 11) parcel or envelope details of a warehouse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheetahConfig {
    pub package_type: Option<i64>,
    pub envelopes_type: Option<i64>,
    pub category_section: Option<i64>,
    pub length_cm: Option<i64>,
    pub width_cm: Option<i64>,
    pub height_cm: Option<i64>,
}

/// One Frotel warehouse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// `send_type` registered for its orders: 1 پیشتاز, 2 سفارشی, 11 Cheetah, 20 seller-fixed.
    #[serde(default = "default_send_type")]
    pub send_type: i64,
    /// Kind of its SKUs unless the SKU says otherwise.
    #[serde(default = "default_kind")]
    pub kind: Kind,
    /// Unit weight (g) of SKUs without their own.
    pub default_weight_g: Option<i64>,
    /// Whole-order free shipping for every order of this warehouse.
    #[serde(default)]
    pub free_send: bool,
    /// Whole-order free shipping when the goods total (Rial) reaches this (the plugins' rule).
    pub free_send_above_rial: Option<i64>,
    /// Cheetah details (required with `send_type = 11`).
    pub cheetah: Option<CheetahConfig>,
    /// Frotel's own warehouse id (`warehouse`), when it is not auto-selected.
    pub frotel_warehouse: Option<i64>,
}

fn default_send_type() -> i64 {
    1
}

fn default_kind() -> Kind {
    Kind::Physical
}

/// Per-SKU data.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuConfig {
    /// Frotel `pro_code` (default: the SKU number).
    pub pro_code: Option<String>,
    /// Product name (default: `SKU <n>`).
    pub name: Option<String>,
    pub kind: Option<Kind>,
    pub weight_g: Option<i64>,
    /// Per-item free shipping (effective only when every item of the parcel has it).
    pub free_send: Option<bool>,
    /// Tax in percent.
    pub tax_percent: Option<f64>,
}

/// Frotel ids of a delivery city.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    pub province: i64,
    pub city: i64,
}

/// The whole mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Rial per unit of `order.submit` amounts (1 when the shop prices Frotel goods in Rial).
    #[serde(default = "one")]
    pub rial_per_unit: i64,
    /// `gender` sent for every buyer (0 female, 1 male): `order.submit` has no gender and
    /// Frotel requires one.
    #[serde(default = "one")]
    pub default_gender: i64,
    /// `ip` for `registerOrderVirtual` (required there; `order.submit` has no buyer IP).
    #[serde(default = "default_ip")]
    pub buyer_ip: String,
    /// The carrier id published as `express_id` / `logistics_type` for Frotel parcels.
    #[serde(default = "default_express_id")]
    pub express_id: i64,
    /// Frotel warehouses by orderbus `warehouse_id`.
    #[serde(default)]
    pub warehouses: BTreeMap<String, WarehouseConfig>,
    #[serde(default)]
    pub skus: BTreeMap<String, SkuConfig>,
    /// Delivery cities by name (`delivery_address.city`, compared normalised), or
    /// `"<province>/<city>"` when one name exists in two provinces.
    #[serde(default)]
    pub cities: BTreeMap<String, CityConfig>,
}

fn one() -> i64 {
    1
}

fn default_ip() -> String {
    "127.0.0.1".into()
}

fn default_express_id() -> i64 {
    90
}

/// The mapping could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("mapping file {path}: {message}")]
    Parse { path: String, message: String },
}

/// A field refused before anything is sent to Frotel.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl From<orderbus_frotel::Error> for Invalid {
    fn from(e: orderbus_frotel::Error) -> Self {
        match e {
            orderbus_frotel::Error::Validation { field, reason } => Invalid { field, reason },
            other => invalid("request", other.to_string()),
        }
    }
}

/// A request ready for one of the three `registerOrder*` methods.
#[derive(Debug, Clone, PartialEq)]
pub enum FrotelRequest {
    Physical(PhysicalOrder),
    Virtual(VirtualOrder),
    Service(ServiceOrder),
}

impl FrotelRequest {
    pub fn kind(&self) -> Kind {
        match self {
            FrotelRequest::Physical(_) => Kind::Physical,
            FrotelRequest::Virtual(_) => Kind::Virtual,
            FrotelRequest::Service(_) => Kind::Service,
        }
    }

    /// The client's own checks (every seed-003 rule), run again here so a refusal is known at
    /// submit time.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            FrotelRequest::Physical(o) => o.validate(),
            FrotelRequest::Virtual(o) => o.validate(),
            FrotelRequest::Service(o) => o.validate(),
        }
        .map_err(Invalid::from)
    }
}

/// Frotel `buy_type` for orderbus' `payment_channel`.
pub fn buy_type(channel: PaymentChannel) -> BuyType {
    match channel {
        PaymentChannel::CashOnDelivery => BuyType::Cod,
        PaymentChannel::PartnerBank => BuyType::OnlineCash,
        PaymentChannel::Gateway => BuyType::PaidToSeller,
    }
}

impl Mapping {
    /// A mapping without warehouses (the service then fulfils nothing).
    pub fn empty() -> Mapping {
        Mapping {
            rial_per_unit: 1,
            default_gender: 1,
            buyer_ip: default_ip(),
            express_id: default_express_id(),
            warehouses: BTreeMap::new(),
            skus: BTreeMap::new(),
            cities: BTreeMap::new(),
        }
    }

    /// Parses a mapping (TOML) and checks it.
    pub fn parse(text: &str, path: &str) -> Result<Mapping, MappingError> {
        let m: Mapping = toml::from_str(text).map_err(|e| MappingError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let bad = |message: String| MappingError::Parse {
            path: path.to_owned(),
            message,
        };
        if m.rial_per_unit <= 0 {
            return Err(bad("rial_per_unit must be > 0".into()));
        }
        Gender::try_from(m.default_gender).map_err(|e| bad(e.to_string()))?;
        for (id, w) in &m.warehouses {
            id.parse::<i64>()
                .map_err(|_| bad(format!("warehouse id `{id}` is not a number")))?;
            let send = SendType::try_from(w.send_type).map_err(|e| bad(e.to_string()))?;
            if !send.registrable() {
                return Err(bad(format!(
                    "warehouse {id}: send_type {} cannot be registered (1, 2, 11 or 20)",
                    w.send_type
                )));
            }
        }
        for id in m.skus.keys() {
            id.parse::<i64>()
                .map_err(|_| bad(format!("sku `{id}` is not a number")))?;
        }
        Ok(m)
    }

    /// Loads the mapping file.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: shown.clone(),
            source,
        })?;
        Mapping::parse(&text, &shown)
    }

    /// Frotel warehouse ids.
    pub fn warehouse_ids(&self) -> BTreeSet<i64> {
        self.warehouses
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect()
    }

    /// The Frotel warehouse of an order: every line ships from one configured warehouse (a JIT
    /// child has one warehouse; a split parent with several is left to its children).
    pub fn frotel_warehouse(&self, submit: &OrderSubmit) -> Option<i64> {
        let first = submit.goods.first()?.warehouse_id;
        let all_same = submit.goods.iter().all(|g| g.warehouse_id == first);
        (all_same && self.warehouses.contains_key(&first.to_string())).then_some(first)
    }

    fn city(&self, province: &str, city: &str) -> Option<&CityConfig> {
        let both = normalise(&format!("{province}/{city}"));
        let city_only = normalise(city);
        self.cities
            .iter()
            .find(|(k, _)| normalise(k) == both)
            .or_else(|| self.cities.iter().find(|(k, _)| normalise(k) == city_only))
            .map(|(_, c)| c)
    }

    /// Rial integer of an `order.submit` amount.
    pub fn rial(&self, field: &str, amount: &orderbus_contracts::Decimal) -> Result<i64, Invalid> {
        let cents = amount
            .to_cents()
            .ok_or_else(|| invalid(field, format!("`{amount}` is not an amount")))?;
        let scaled = cents
            .checked_mul(self.rial_per_unit)
            .ok_or_else(|| invalid(field, "too large"))?;
        if scaled % 100 != 0 {
            return Err(invalid(
                field,
                format!("`{amount}` is not a whole number of Rial (Frotel takes integers)"),
            ));
        }
        Ok(scaled / 100)
    }

    /// Builds and checks the Frotel request for an order of warehouse `warehouse`.
    pub fn build(&self, submit: &OrderSubmit, warehouse: i64) -> Result<FrotelRequest, Invalid> {
        let w = self
            .warehouses
            .get(&warehouse.to_string())
            .ok_or_else(|| invalid("goods[0].warehouse_id", "not a Frotel warehouse"))?;
        if submit.goods.is_empty() {
            return Err(invalid("goods", "at least one item"));
        }
        let mut kind: Option<Kind> = None;
        let mut basket = Vec::with_capacity(submit.goods.len());
        for (i, g) in submit.goods.iter().enumerate() {
            let sku = self
                .skus
                .get(&g.product_sku.to_string())
                .cloned()
                .unwrap_or_default();
            let k = sku.kind.unwrap_or(w.kind);
            match kind {
                None => kind = Some(k),
                Some(prev) if prev != k => {
                    return Err(invalid(
                        format!("goods[{i}].product_sku"),
                        format!(
                            "is {} but goods[0] is {}: Frotel registers one kind per order",
                            k.as_str(),
                            prev.as_str()
                        ),
                    ))
                }
                Some(_) => {}
            }
            let weight = match k {
                Kind::Physical => sku.weight_g.or(w.default_weight_g).ok_or_else(|| {
                    invalid(
                        format!("goods[{i}].weight"),
                        format!(
                            "no weight (g) configured for SKU {} or warehouse {warehouse}",
                            g.product_sku
                        ),
                    )
                })?,
                _ => sku.weight_g.unwrap_or(0),
            };
            let mut item = BasketItem::new(
                &sku.pro_code.unwrap_or_else(|| g.product_sku.to_string()),
                &sku.name.unwrap_or_else(|| format!("SKU {}", g.product_sku)),
                self.rial(&format!("goods[{i}].last_price"), &g.last_price)?,
                g.buy_number,
                weight,
            );
            if k == Kind::Physical {
                item.free_send = sku.free_send;
            }
            item.tax = sku.tax_percent;
            basket.push(item);
        }
        let kind = kind.unwrap_or(w.kind);
        let a = &submit.delivery_address;
        let (name, family) = split_name(&a.user_name);
        let buyer = Buyer {
            name,
            family,
            // order.submit has one phone number: it is sent as both phone and mobile.
            phone: a.mobile.clone(),
            mobile: a.mobile.clone(),
            gender: Gender::try_from(self.default_gender)?,
            email: (!a.email.trim().is_empty()).then(|| a.email.clone()),
        };
        let address = || -> Result<Address, Invalid> {
            let c = self.city(&a.province, &a.city).ok_or_else(|| {
                invalid(
                    "delivery_address.city",
                    format!(
                        "`{}` ({}) has no Frotel city id in the mapping",
                        a.city, a.province
                    ),
                )
            })?;
            if a.zip_code.trim().is_empty() {
                return Err(invalid(
                    "delivery_address.zip_code",
                    "required by Frotel (code_posti)",
                ));
            }
            let street = if a.district.trim().is_empty() {
                a.address.clone()
            } else {
                format!("{}, {}", a.district, a.address)
            };
            Ok(Address {
                address: street,
                code_posti: a.zip_code.clone(),
                province: c.province,
                city: c.city,
            })
        };
        let pm = (!submit.remark.trim().is_empty()).then(|| submit.remark.clone());
        let buy = buy_type(submit.payment_channel);
        let request = match kind {
            Kind::Physical => {
                let send_type = SendType::try_from(w.send_type)?;
                let mut o = PhysicalOrder::new(buyer, address()?, buy, send_type, basket);
                o.shop_barcode = Some(submit.order_code.to_string());
                o.pm = pm;
                if send_type == SendType::Cheetah {
                    let c = w.cheetah.clone().unwrap_or_default();
                    o.cheetah = Some(CheetahDetails {
                        package_type: c.package_type,
                        envelopes_type: c.envelopes_type,
                        category_section: c.category_section,
                        length: c.length_cm,
                        width: c.width_cm,
                        height: c.height_cm,
                    });
                }
                if send_type == SendType::SellerFixed {
                    o.post_price = Some(self.rial("shipping_cost", &submit.shipping_cost)?);
                }
                let goods = orderbus_frotel::model::goods_total(&o.basket);
                let above = w.free_send_above_rial.is_some_and(|x| goods >= x);
                if w.free_send || above {
                    o.free_send = Some(true);
                    // Seller-managed delivery that ships free charges nothing.
                    if o.post_price.is_some() {
                        o.post_price = Some(0);
                    }
                }
                if let Some(fw) = w.frotel_warehouse {
                    o.auto_select_warehouse = Some(false);
                    o.warehouse = Some(fw);
                }
                FrotelRequest::Physical(o)
            }
            Kind::Virtual | Kind::Service => {
                if buy != BuyType::OnlineCash {
                    return Err(invalid(
                        "payment_channel",
                        format!(
                            "{} goods are paid online through Frotel's bank: payment_channel must be partner_bank",
                            kind.as_str()
                        ),
                    ));
                }
                if kind == Kind::Virtual {
                    FrotelRequest::Virtual(VirtualOrder {
                        buyer,
                        ip: self.buyer_ip.clone(),
                        pm: pm.unwrap_or_default(),
                        basket,
                    })
                } else {
                    FrotelRequest::Service(ServiceOrder {
                        buyer,
                        address: address()?,
                        ip: None,
                        pm,
                        basket,
                    })
                }
            }
        };
        request.validate()?;
        Ok(request)
    }
}

/// `user_name` → (`name`, `family`): first word, then the rest; a one-word name is sent as both
/// (Frotel requires a non-empty family name).
pub fn split_name(full: &str) -> (String, String) {
    let full = full.trim();
    match full.split_once(char::is_whitespace) {
        Some((first, rest)) if !rest.trim().is_empty() => {
            (first.to_owned(), rest.trim().to_owned())
        }
        _ => (full.to_owned(), full.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split() {
        assert_eq!(split_name("Ali Rezaei"), ("Ali".into(), "Rezaei".into()));
        assert_eq!(
            split_name(" Sara  Mohammadi Tehrani "),
            ("Sara".into(), "Mohammadi Tehrani".into())
        );
        assert_eq!(split_name("Dariush"), ("Dariush".into(), "Dariush".into()));
    }

    #[test]
    fn bad_mapping_is_refused_with_the_reason() {
        let e = Mapping::parse("[warehouses.\"7\"]\nsend_type = 4\n", "m.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("send_type 4"), "{e}");
        let e = Mapping::parse("default_gender = 2\n", "m.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("gender"), "{e}");
    }
}
