//! Typed ids. Our order codes and after-sale ids and the ERP's exchange/return ids are all
//! `bigint` in the database and numbers on the wire; distinct types keep one from being passed
//! where another is meant (the compiler, not a `bool` argument, picks the id space).

use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }
    };
}

id_type!(
    /// An order's code (`order_code` / `orderCode` on the wire), ours: split children and
    /// exchange replacements get their own.
    OrderCode
);
id_type!(
    /// Our id of an exchange order (the `id` the storefront API returns).
    ExchangeId
);
id_type!(
    /// Our id of a return order.
    ReturnId
);
id_type!(
    /// The ERP's id of an exchange order (`erp.createChangeOrder`'s `id`).
    ErpExchangeId
);
id_type!(
    /// The ERP's id of a return order (`erp.createRefundOrder`'s `order_returned_id`).
    ErpReturnId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transparent_on_the_wire_and_in_text() {
        let code: OrderCode = "100000123".parse().expect("digits");
        assert_eq!(code, OrderCode(100_000_123));
        assert_eq!(code.to_string(), "100000123");
        assert_eq!(
            serde_json::to_string(&code).ok().as_deref(),
            Some("100000123")
        );
        assert!("12x".parse::<ExchangeId>().is_err());
    }
}
