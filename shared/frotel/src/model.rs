//! Request-side model: enumerations, factor ids, the three order shapes and their validation
//! (run by the client before anything is sent), and their PHP-style form fields.

use crate::error::Error;
use crate::form::FormValue;
use std::fmt;

/// Payment method (`buy_type`) of `registerOrder` / `getPrices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuyType {
    /// 1 — pay on delivery (COD, پرداخت در محل); physical goods only. `posti` in getPrices.
    Cod,
    /// 2 — online cash paid to Frotel through a bank gateway. `naghdi` in getPrices.
    OnlineCash,
    /// 3 — already paid to the seller personally; registerOrder only.
    PaidToSeller,
}

impl BuyType {
    /// Wire code.
    pub fn code(self) -> i64 {
        match self {
            BuyType::Cod => 1,
            BuyType::OnlineCash => 2,
            BuyType::PaidToSeller => 3,
        }
    }
}

impl TryFrom<i64> for BuyType {
    type Error = Error;
    fn try_from(v: i64) -> Result<Self, Error> {
        match v {
            1 => Ok(BuyType::Cod),
            2 => Ok(BuyType::OnlineCash),
            3 => Ok(BuyType::PaidToSeller),
            _ => Err(Error::validation(
                "buy_type",
                format!("{v} is not 1, 2 or 3"),
            )),
        }
    }
}

/// Shipping method (`send_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendType {
    /// 1 — پیشتاز (express post).
    Pishtaz,
    /// 2 — سفارشی (registered post).
    Sefareshi,
    /// 3 — مطبوعات (printed matter); getPrices only.
    Matbooat,
    /// 4 — پیک شهری (city courier); getPrices only.
    CityCourier,
    /// 11 — چیتا (Cheetah); registerOrder only, needs [`CheetahDetails`].
    Cheetah,
    /// 20 — seller-managed fixed-price delivery with `post_price` (official helper's
    /// `DELIVERY_FIXED`); registerOrder only.
    SellerFixed,
}

impl SendType {
    /// Wire code.
    pub fn code(self) -> i64 {
        match self {
            SendType::Pishtaz => 1,
            SendType::Sefareshi => 2,
            SendType::Matbooat => 3,
            SendType::CityCourier => 4,
            SendType::Cheetah => 11,
            SendType::SellerFixed => 20,
        }
    }

    /// Accepted by `getPrices` (the seed lists 1–4).
    pub fn quotable(self) -> bool {
        matches!(
            self,
            SendType::Pishtaz | SendType::Sefareshi | SendType::Matbooat | SendType::CityCourier
        )
    }

    /// Accepted by `registerOrder` (the seed lists 1, 2, 11; the helper adds 20).
    pub fn registrable(self) -> bool {
        matches!(
            self,
            SendType::Pishtaz | SendType::Sefareshi | SendType::Cheetah | SendType::SellerFixed
        )
    }
}

impl TryFrom<i64> for SendType {
    type Error = Error;
    fn try_from(v: i64) -> Result<Self, Error> {
        match v {
            1 => Ok(SendType::Pishtaz),
            2 => Ok(SendType::Sefareshi),
            3 => Ok(SendType::Matbooat),
            4 => Ok(SendType::CityCourier),
            11 => Ok(SendType::Cheetah),
            20 => Ok(SendType::SellerFixed),
            _ => Err(Error::validation(
                "send_type",
                format!("{v} is not one of 1, 2, 3, 4, 11, 20"),
            )),
        }
    }
}

/// Buyer gender: 0 = female, 1 = male.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    /// 0 (زن).
    Female,
    /// 1 (مرد).
    Male,
}

impl Gender {
    /// Wire code.
    pub fn code(self) -> i64 {
        match self {
            Gender::Female => 0,
            Gender::Male => 1,
        }
    }
}

impl TryFrom<i64> for Gender {
    type Error = Error;
    fn try_from(v: i64) -> Result<Self, Error> {
        match v {
            0 => Ok(Gender::Female),
            1 => Ok(Gender::Male),
            _ => Err(Error::validation("gender", format!("{v} is not 0 or 1"))),
        }
    }
}

/// A Frotel factor (invoice/order) id: 20 decimal digits, kept as a string because it exceeds
/// `i64`/`u64`. Shown hyphenated by some methods; always sent without hyphens. Serializes as
/// the plain digit string; deserializing validates like [`FactorId::parse`].
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct FactorId(String);

impl TryFrom<String> for FactorId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        FactorId::parse(&s)
    }
}

impl From<FactorId> for String {
    fn from(f: FactorId) -> String {
        f.0
    }
}

impl FactorId {
    /// Parse a caller-supplied id: hyphens and spaces are stripped, then exactly 20 digits.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::validation(
                "factor",
                format!("`{s}` is not a 20-digit factor id"),
            ));
        }
        Ok(FactorId(digits))
    }

    /// Lenient form for ids echoed back by Frotel (orderPay/tracking show them hyphenated, and
    /// the documentation's own sample has 19 digits): any non-empty digit run after stripping.
    pub(crate) fn from_server(s: &str) -> Option<Self> {
        let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(FactorId(digits))
    }

    /// The digits, as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Display form `22-000000-000000-000000` (2-6-6-6; the grouping is inferred from the docs).
    pub fn hyphenated(&self) -> String {
        let s = &self.0;
        if s.len() != 20 {
            return s.clone();
        }
        format!("{}-{}-{}-{}", &s[..2], &s[2..8], &s[8..14], &s[14..])
    }
}

impl fmt::Display for FactorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `getPrices` input.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRequest {
    /// Destination city id (Frotel's city list).
    pub des_city: i64,
    /// Order total in Rial.
    pub price: i64,
    /// Order weight in grams.
    pub weight: i64,
    /// Shipping methods to quote (1–4).
    pub send_types: Vec<SendType>,
    /// Payment methods to quote (1 COD, 2 online cash).
    pub buy_types: Vec<BuyType>,
}

impl PriceRequest {
    /// Checks done before sending.
    pub fn validate(&self) -> Result<(), Error> {
        positive("des_city", self.des_city)?;
        non_negative("price", self.price)?;
        non_negative("weight", self.weight)?;
        if self.send_types.is_empty() {
            return Err(Error::validation("send_type", "at least one send_type"));
        }
        if let Some(s) = self.send_types.iter().find(|s| !s.quotable()) {
            return Err(Error::validation(
                "send_type",
                format!("getPrices quotes send_type 1-4 only, not {}", s.code()),
            ));
        }
        if self.buy_types.is_empty() {
            return Err(Error::validation("buy_type", "at least one buy_type"));
        }
        if self.buy_types.contains(&BuyType::PaidToSeller) {
            return Err(Error::validation(
                "buy_type",
                "getPrices quotes buy_type 1 (COD) and 2 (online cash) only",
            ));
        }
        Ok(())
    }

    /// Form fields in the order of the reference sample (`api` is appended by the client).
    pub fn to_form(&self) -> Vec<(String, FormValue)> {
        vec![
            ("des_city".into(), self.des_city.into()),
            ("price".into(), self.price.into()),
            ("weight".into(), self.weight.into()),
            (
                "buy_type".into(),
                FormValue::List(self.buy_types.iter().map(|b| b.code().into()).collect()),
            ),
            (
                "send_type".into(),
                FormValue::List(self.send_types.iter().map(|s| s.code().into()).collect()),
            ),
        ]
    }
}

/// Buyer identity, common to the three registration methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Buyer {
    /// نام.
    pub name: String,
    /// نام خانوادگی.
    pub family: String,
    /// Landline phone.
    pub phone: String,
    /// Mobile phone.
    pub mobile: String,
    /// 0 female / 1 male.
    pub gender: Gender,
    /// Optional e-mail.
    pub email: Option<String>,
}

/// Delivery address (physical and service orders).
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    /// Street address.
    pub address: String,
    /// Postal code (`code_posti`).
    pub code_posti: String,
    /// Province id.
    pub province: i64,
    /// City id.
    pub city: i64,
}

/// One basket line (`basket[i][…]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BasketItem {
    /// Product code (`pro_code`).
    pub pro_code: String,
    /// Product name.
    pub name: String,
    /// Unit price in Rial.
    pub price: i64,
    /// Quantity (≥ 1).
    pub count: i64,
    /// Unit weight in grams.
    pub weight: i64,
    /// Commission in percent.
    pub porsant: Option<f64>,
    /// Marketer id.
    pub bazaryab: Option<i64>,
    /// Discount in percent.
    pub discount: Option<f64>,
    /// Per-item free shipping (only effective if every item has it, see
    /// [`PhysicalOrder::ships_free`]).
    pub free_send: Option<bool>,
    /// Tax in percent.
    pub tax: Option<f64>,
}

impl BasketItem {
    /// A line with only the required fields.
    pub fn new(pro_code: &str, name: &str, price: i64, count: i64, weight: i64) -> Self {
        BasketItem {
            pro_code: pro_code.to_owned(),
            name: name.to_owned(),
            price,
            count,
            weight,
            porsant: None,
            bazaryab: None,
            discount: None,
            free_send: None,
            tax: None,
        }
    }

    fn to_form(&self) -> FormValue {
        let mut m: Vec<(String, FormValue)> = vec![
            ("pro_code".into(), self.pro_code.clone().into()),
            ("name".into(), self.name.clone().into()),
            ("price".into(), self.price.into()),
            ("count".into(), self.count.into()),
            ("weight".into(), self.weight.into()),
        ];
        push_opt(&mut m, "porsant", self.porsant.map(FormValue::Float));
        push_opt(&mut m, "bazaryab", self.bazaryab.map(FormValue::Int));
        push_opt(&mut m, "discount", self.discount.map(FormValue::Float));
        // free_send is an int 0/1 on the wire; bool encodes the same way.
        push_opt(&mut m, "free_send", self.free_send.map(FormValue::Bool));
        push_opt(&mut m, "tax", self.tax.map(FormValue::Float));
        FormValue::Map(m)
    }
}

/// Cheetah (`send_type = 11`) parcel details, mirroring the wire's conditional fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheetahDetails {
    /// `cheeta_package_type`: 1 parcel (بسته), 2 envelope (پاکت). Required.
    pub package_type: Option<i64>,
    /// `cheeta_envelopes_type` 901–911. Required for envelopes.
    pub envelopes_type: Option<i64>,
    /// `category_section` 1–6. Required for parcels.
    pub category_section: Option<i64>,
    /// `cheeta_length` in cm. Required for parcels.
    pub length: Option<i64>,
    /// `cheeta_width` in cm. Required for parcels.
    pub width: Option<i64>,
    /// `cheeta_height` in cm. Required for parcels.
    pub height: Option<i64>,
}

impl CheetahDetails {
    /// A parcel (`package_type = 1`).
    pub fn parcel(category_section: i64, length: i64, width: i64, height: i64) -> Self {
        CheetahDetails {
            package_type: Some(1),
            category_section: Some(category_section),
            length: Some(length),
            width: Some(width),
            height: Some(height),
            envelopes_type: None,
        }
    }

    /// An envelope (`package_type = 2`).
    pub fn envelope(envelopes_type: i64) -> Self {
        CheetahDetails {
            package_type: Some(2),
            envelopes_type: Some(envelopes_type),
            ..Default::default()
        }
    }

    /// The seed's conditional rules.
    pub fn validate(&self) -> Result<(), Error> {
        match self.package_type {
            None => Err(Error::validation(
                "cheeta_package_type",
                "required when send_type is 11 (Cheetah)",
            )),
            Some(1) => {
                let cat = self.category_section.ok_or_else(|| {
                    Error::validation("category_section", "required for a Cheetah parcel")
                })?;
                if !(1..=6).contains(&cat) {
                    return Err(Error::validation(
                        "category_section",
                        format!("{cat} is not 1-6"),
                    ));
                }
                for (field, v) in [
                    ("cheeta_length", self.length),
                    ("cheeta_width", self.width),
                    ("cheeta_height", self.height),
                ] {
                    let v =
                        v.ok_or_else(|| Error::validation(field, "required for a Cheetah parcel"))?;
                    positive(field, v)?;
                }
                if self.envelopes_type.is_some() {
                    return Err(Error::validation(
                        "cheeta_envelopes_type",
                        "only for envelopes (cheeta_package_type 2)",
                    ));
                }
                Ok(())
            }
            Some(2) => {
                let e = self.envelopes_type.ok_or_else(|| {
                    Error::validation("cheeta_envelopes_type", "required for a Cheetah envelope")
                })?;
                if !(901..=911).contains(&e) {
                    return Err(Error::validation(
                        "cheeta_envelopes_type",
                        format!("{e} is not 901-911"),
                    ));
                }
                let parcel_only = [
                    ("category_section", self.category_section),
                    ("cheeta_length", self.length),
                    ("cheeta_width", self.width),
                    ("cheeta_height", self.height),
                ];
                if let Some((field, _)) = parcel_only.iter().find(|(_, v)| v.is_some()) {
                    return Err(Error::validation(
                        *field,
                        "only for parcels (cheeta_package_type 1)",
                    ));
                }
                Ok(())
            }
            Some(other) => Err(Error::validation(
                "cheeta_package_type",
                format!("{other} is not 1 (parcel) or 2 (envelope)"),
            )),
        }
    }

    fn push_form(&self, m: &mut Vec<(String, FormValue)>) {
        push_opt(
            m,
            "cheeta_package_type",
            self.package_type.map(FormValue::Int),
        );
        push_opt(
            m,
            "cheeta_envelopes_type",
            self.envelopes_type.map(FormValue::Int),
        );
        push_opt(
            m,
            "category_section",
            self.category_section.map(FormValue::Int),
        );
        push_opt(m, "cheeta_length", self.length.map(FormValue::Int));
        push_opt(m, "cheeta_width", self.width.map(FormValue::Int));
        push_opt(m, "cheeta_height", self.height.map(FormValue::Int));
    }
}

/// `registerOrder` input (physical goods).
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalOrder {
    /// Buyer.
    pub buyer: Buyer,
    /// Delivery address.
    pub address: Address,
    /// Payment method.
    pub buy_type: BuyType,
    /// Shipping method: 1, 2, 11 or 20.
    pub send_type: SendType,
    /// Basket (non-empty).
    pub basket: Vec<BasketItem>,
    /// Seller's own invoice number.
    pub shop_barcode: Option<String>,
    /// Buyer IP.
    pub ip: Option<String>,
    /// Buyer message.
    pub pm: Option<String>,
    /// Whole-order free shipping.
    pub free_send: Option<bool>,
    /// Coupon code (wire name `Coupon`, capital C, as in the seed).
    pub coupon: Option<String>,
    /// Whole-order discount in Rial.
    pub discount: Option<i64>,
    /// Shipping price for seller-managed delivery (`send_type` 20).
    pub post_price: Option<i64>,
    /// `autoSelectWarehouse`.
    pub auto_select_warehouse: Option<bool>,
    /// `warehouse` id (when not auto-selected).
    pub warehouse: Option<i64>,
    /// `checkProductWarehouse`.
    pub check_product_warehouse: Option<bool>,
    /// Cheetah details; required iff `send_type` is 11.
    pub cheetah: Option<CheetahDetails>,
}

impl PhysicalOrder {
    /// A minimal order; optional fields unset.
    pub fn new(
        buyer: Buyer,
        address: Address,
        buy_type: BuyType,
        send_type: SendType,
        basket: Vec<BasketItem>,
    ) -> Self {
        PhysicalOrder {
            buyer,
            address,
            buy_type,
            send_type,
            basket,
            shop_barcode: None,
            ip: None,
            pm: None,
            free_send: None,
            coupon: None,
            discount: None,
            post_price: None,
            auto_select_warehouse: None,
            warehouse: None,
            check_product_warehouse: None,
            cheetah: None,
        }
    }

    /// Whether the parcel ships free: order-level `free_send`, or every item `free_send` (one
    /// non-free item cancels per-item free shipping for the whole parcel).
    pub fn ships_free(&self) -> bool {
        self.free_send == Some(true)
            || (!self.basket.is_empty() && self.basket.iter().all(|i| i.free_send == Some(true)))
    }

    /// Checks done before sending.
    pub fn validate(&self) -> Result<(), Error> {
        validate_buyer(&self.buyer)?;
        validate_address(&self.address)?;
        validate_basket(&self.basket, true)?;
        if !self.send_type.registrable() {
            return Err(Error::validation(
                "send_type",
                format!(
                    "registerOrder accepts send_type 1, 2, 11 or 20, not {}",
                    self.send_type.code()
                ),
            ));
        }
        match (self.send_type, &self.cheetah) {
            (SendType::Cheetah, None) => {
                return Err(Error::validation(
                    "cheeta_package_type",
                    "required when send_type is 11 (Cheetah)",
                ))
            }
            (SendType::Cheetah, Some(c)) => c.validate()?,
            (_, Some(_)) => {
                return Err(Error::validation(
                    "cheeta_package_type",
                    "Cheetah fields are only for send_type 11",
                ))
            }
            (_, None) => {}
        }
        match (self.send_type, self.post_price) {
            (SendType::SellerFixed, None) => {
                return Err(Error::validation(
                    "post_price",
                    "required for seller-managed delivery (send_type 20)",
                ))
            }
            (SendType::SellerFixed, Some(p)) => non_negative("post_price", p)?,
            (_, Some(_)) => {
                return Err(Error::validation(
                    "post_price",
                    "only for seller-managed delivery (send_type 20)",
                ))
            }
            (_, None) => {}
        }
        if self.free_send == Some(true) && self.post_price.unwrap_or(0) > 0 {
            return Err(Error::validation(
                "free_send",
                "whole-order free_send contradicts a non-zero post_price",
            ));
        }
        if let Some(d) = self.discount {
            non_negative("discount", d)?;
            if d > goods_total(&self.basket) {
                return Err(Error::validation(
                    "discount",
                    "whole-order discount exceeds the basket total",
                ));
            }
        }
        if self.warehouse.is_some() && self.auto_select_warehouse == Some(true) {
            return Err(Error::validation(
                "warehouse",
                "set only when autoSelectWarehouse is 0",
            ));
        }
        Ok(())
    }

    /// Form fields (without `api`).
    pub fn to_form(&self) -> Vec<(String, FormValue)> {
        let mut m = Vec::new();
        push_opt(
            &mut m,
            "shop_barcode",
            self.shop_barcode.clone().map(FormValue::Str),
        );
        push_buyer(&mut m, &self.buyer);
        push_address(&mut m, &self.address);
        m.push(("buy_type".into(), self.buy_type.code().into()));
        m.push(("send_type".into(), self.send_type.code().into()));
        push_opt(&mut m, "ip", self.ip.clone().map(FormValue::Str));
        push_opt(&mut m, "pm", self.pm.clone().map(FormValue::Str));
        m.push(("basket".into(), basket_form(&self.basket)));
        push_opt(&mut m, "free_send", self.free_send.map(FormValue::Bool));
        push_opt(&mut m, "Coupon", self.coupon.clone().map(FormValue::Str));
        push_opt(&mut m, "discount", self.discount.map(FormValue::Int));
        push_opt(&mut m, "post_price", self.post_price.map(FormValue::Int));
        push_opt(
            &mut m,
            "autoSelectWarehouse",
            self.auto_select_warehouse.map(FormValue::Bool),
        );
        push_opt(&mut m, "warehouse", self.warehouse.map(FormValue::Int));
        push_opt(
            &mut m,
            "checkProductWarehouse",
            self.check_product_warehouse.map(FormValue::Bool),
        );
        if let Some(c) = &self.cheetah {
            c.push_form(&mut m);
        }
        m
    }
}

/// `registerOrderVirtual` input (downloadable goods; always paid online).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualOrder {
    /// Buyer.
    pub buyer: Buyer,
    /// Buyer IP (required for virtual orders).
    pub ip: String,
    /// Buyer message (required field; may be empty).
    pub pm: String,
    /// Basket (non-empty; products must have a file uploaded in the Frotel panel).
    pub basket: Vec<BasketItem>,
}

impl VirtualOrder {
    /// Checks done before sending.
    pub fn validate(&self) -> Result<(), Error> {
        validate_buyer(&self.buyer)?;
        required("ip", &self.ip)?;
        validate_basket(&self.basket, false)
    }

    /// Form fields (without `api`).
    pub fn to_form(&self) -> Vec<(String, FormValue)> {
        let mut m = Vec::new();
        push_buyer(&mut m, &self.buyer);
        m.push(("ip".into(), self.ip.clone().into()));
        m.push(("pm".into(), self.pm.clone().into()));
        m.push(("basket".into(), basket_form(&self.basket)));
        m
    }
}

/// `registerOrderService` input (services; always paid online).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOrder {
    /// Buyer.
    pub buyer: Buyer,
    /// Address.
    pub address: Address,
    /// Buyer IP.
    pub ip: Option<String>,
    /// Buyer message.
    pub pm: Option<String>,
    /// Basket (non-empty).
    pub basket: Vec<BasketItem>,
}

impl ServiceOrder {
    /// Checks done before sending.
    pub fn validate(&self) -> Result<(), Error> {
        validate_buyer(&self.buyer)?;
        validate_address(&self.address)?;
        validate_basket(&self.basket, false)
    }

    /// Form fields (without `api`).
    pub fn to_form(&self) -> Vec<(String, FormValue)> {
        let mut m = Vec::new();
        push_buyer(&mut m, &self.buyer);
        push_address(&mut m, &self.address);
        push_opt(&mut m, "ip", self.ip.clone().map(FormValue::Str));
        push_opt(&mut m, "pm", self.pm.clone().map(FormValue::Str));
        m.push(("basket".into(), basket_form(&self.basket)));
        m
    }
}

/// Sum of `price × count` less per-item percent discounts, in Rial (saturating).
pub fn goods_total(basket: &[BasketItem]) -> i64 {
    basket.iter().fold(0i64, |acc, i| {
        let gross = i.price.saturating_mul(i.count);
        let disc = i.discount.unwrap_or(0.0).clamp(0.0, 100.0);
        let net = (gross as f64 * (100.0 - disc) / 100.0).round() as i64;
        acc.saturating_add(net)
    })
}

fn push_opt(m: &mut Vec<(String, FormValue)>, key: &str, v: Option<FormValue>) {
    if let Some(v) = v {
        m.push((key.to_owned(), v));
    }
}

fn push_buyer(m: &mut Vec<(String, FormValue)>, b: &Buyer) {
    m.push(("name".into(), b.name.clone().into()));
    m.push(("family".into(), b.family.clone().into()));
    m.push(("phone".into(), b.phone.clone().into()));
    m.push(("mobile".into(), b.mobile.clone().into()));
    m.push(("gender".into(), b.gender.code().into()));
    push_opt(m, "email", b.email.clone().map(FormValue::Str));
}

fn push_address(m: &mut Vec<(String, FormValue)>, a: &Address) {
    m.push(("address".into(), a.address.clone().into()));
    m.push(("code_posti".into(), a.code_posti.clone().into()));
    m.push(("province".into(), a.province.into()));
    m.push(("city".into(), a.city.into()));
}

fn basket_form(basket: &[BasketItem]) -> FormValue {
    FormValue::List(basket.iter().map(BasketItem::to_form).collect())
}

fn required(field: &str, v: &str) -> Result<(), Error> {
    if v.trim().is_empty() {
        Err(Error::validation(field, "required"))
    } else {
        Ok(())
    }
}

fn positive(field: &str, v: i64) -> Result<(), Error> {
    if v > 0 {
        Ok(())
    } else {
        Err(Error::validation(field, format!("{v} must be > 0")))
    }
}

fn non_negative(field: &str, v: i64) -> Result<(), Error> {
    if v >= 0 {
        Ok(())
    } else {
        Err(Error::validation(field, format!("{v} must be >= 0")))
    }
}

fn percent(field: &str, v: Option<f64>) -> Result<(), Error> {
    match v {
        Some(p) if !p.is_finite() || !(0.0..=100.0).contains(&p) => Err(Error::validation(
            field,
            format!("{p} is not a percentage in 0-100"),
        )),
        _ => Ok(()),
    }
}

fn validate_buyer(b: &Buyer) -> Result<(), Error> {
    required("name", &b.name)?;
    required("family", &b.family)?;
    required("phone", &b.phone)?;
    required("mobile", &b.mobile)?;
    if let Some(e) = &b.email {
        if !e.contains('@') {
            return Err(Error::validation("email", "not an e-mail address"));
        }
    }
    Ok(())
}

fn validate_address(a: &Address) -> Result<(), Error> {
    required("address", &a.address)?;
    required("code_posti", &a.code_posti)?;
    positive("province", a.province)?;
    positive("city", a.city)
}

fn validate_basket(basket: &[BasketItem], ships: bool) -> Result<(), Error> {
    if basket.is_empty() {
        return Err(Error::validation("basket", "at least one item"));
    }
    for (i, it) in basket.iter().enumerate() {
        let f = |name: &str| format!("basket[{i}][{name}]");
        required(&f("pro_code"), &it.pro_code)?;
        required(&f("name"), &it.name)?;
        non_negative(&f("price"), it.price)?;
        positive(&f("count"), it.count)?;
        if ships {
            // Postage is computed from weight; a weightless physical item is a data error.
            positive(&f("weight"), it.weight)?;
        } else {
            non_negative(&f("weight"), it.weight)?;
            if it.free_send.is_some() {
                return Err(Error::validation(
                    f("free_send"),
                    "free_send only applies to physical goods (registerOrder)",
                ));
            }
        }
        percent(&f("porsant"), it.porsant)?;
        percent(&f("discount"), it.discount)?;
        percent(&f("tax"), it.tax)?;
        if let Some(b) = it.bazaryab {
            positive(&f("bazaryab"), b)?;
        }
    }
    Ok(())
}
