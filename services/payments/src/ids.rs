//! Typed ids: the storefront's order code (ours and the bus's key) and the Sinopac OrderNo we
//! derive from it, so the two are never confused.

use std::fmt;

/// The storefront's order code (`order_code` in every message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderCode(pub i64);

impl fmt::Display for OrderCode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Sinopac `OrderNo` of the `n`-th attempt (1-based) of an order: `<order_code>-<n>`.
///
/// Unique per attempt (the bank refuses a second OrderCreate with the same OrderNo), at most
/// 50 characters, none of `'` `"` `%`.
pub fn order_no(code: OrderCode, attempt: i64) -> String {
    format!("{}-{attempt}", code.0)
}

/// The order code an OrderNo of ours names, if it is one of ours.
pub fn parse_order_no(order_no: &str) -> Option<OrderCode> {
    let (code, n) = order_no.split_once('-')?;
    n.parse::<u32>().ok()?;
    code.parse::<i64>().ok().filter(|c| *c > 0).map(OrderCode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_no_round_trips() {
        let no = order_no(OrderCode(1_000_000_000_123), 2);
        assert_eq!(no, "1000000000123-2");
        assert_eq!(parse_order_no(&no), Some(OrderCode(1_000_000_000_123)));
        assert_eq!(parse_order_no("A202110507397"), None);
        assert_eq!(parse_order_no("-1-2"), None);
        assert!(no.len() <= 50);
    }
}
