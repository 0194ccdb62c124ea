#![doc = include_str!("../README.md")]

pub mod client;
pub mod error;
pub mod form;
pub mod model;
pub mod response;
#[cfg(feature = "sim")]
pub mod sim;

pub use client::{ClientConfig, FrotelClient, Idempotency, MirrorHealth, DEFAULT_MIRRORS};
pub use error::Error;
pub use model::{
    Address, BasketItem, BuyType, Buyer, CheetahDetails, FactorId, Gender, PhysicalOrder,
    PriceRequest, SendType, ServiceOrder, VirtualOrder,
};
pub use response::{
    Bank, CallbackParams, DownloadLink, DownloadLinks, Envelope, FactorItem, OrderPayStatus,
    PaymentCheck, PaymentForm, Prices, Quote, RegisteredOrder, TrackedOrder, Tracking,
    TrackingBuyType, TrackingPayment,
};
