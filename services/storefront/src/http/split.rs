//! The JIT split of a new order: lines grouped by warehouse, the amounts of the parent and of
//! each child, every sum checked against the `numeric(14,2)` limit.

use std::collections::BTreeMap;

use super::types::{amount_cents, CreateOrder, OrderItemInput, MAX_AMOUNT_CENTS, MAX_AMOUNT_TEXT};

/// One order to insert: its lines and amounts in cents.
#[derive(Debug)]
pub struct Part<'a> {
    pub items: Vec<&'a OrderItemInput>,
    pub amount_cents: i64,
    pub shipping_cents: i64,
}

/// The order as submitted, and its children when the lines come from more than one warehouse
/// (one per warehouse, in warehouse-id order; shipping is charged to the first, so the
/// children's amounts add up to the parent's).
#[derive(Debug)]
pub struct Plan<'a> {
    pub parent: Part<'a>,
    pub children: Vec<Part<'a>>,
}

fn too_large(field: impl Into<String>, what: &str) -> (String, String) {
    (
        field.into(),
        format!("{what} must be at most {MAX_AMOUNT_TEXT}"),
    )
}

/// Adds cents, refusing a sum past [`MAX_AMOUNT_CENTS`] (or past `i64`).
fn add(a: i64, b: i64) -> Option<i64> {
    a.checked_add(b).filter(|s| *s <= MAX_AMOUNT_CENTS)
}

/// Plans the order; `Err((field, reason))` when an amount or a total is out of range.
pub fn plan(req: &CreateOrder) -> Result<Plan<'_>, (String, String)> {
    let shipping = amount_cents("shipping_cost", &req.shipping_cost)?;
    let mut line_totals = Vec::with_capacity(req.items.len());
    let mut goods = 0i64;
    for (i, it) in req.items.iter().enumerate() {
        let unit = amount_cents(&format!("items[{i}].unit_price"), &it.unit_price)?;
        let line = unit
            .checked_mul(it.quantity)
            .filter(|l| (0..=MAX_AMOUNT_CENTS).contains(l))
            .ok_or_else(|| too_large(format!("items[{i}]"), "quantity × unit_price"))?;
        goods = add(goods, line).ok_or_else(|| too_large("items", "the goods total"))?;
        line_totals.push(line);
    }
    let total = add(goods, shipping)
        .ok_or_else(|| too_large("shipping_cost", "the order total (goods + shipping_cost)"))?;
    let mut by_warehouse: BTreeMap<i64, (Vec<&OrderItemInput>, i64)> = BTreeMap::new();
    for (it, line) in req.items.iter().zip(&line_totals) {
        let (items, sum) = by_warehouse.entry(it.warehouse_id).or_default();
        items.push(it);
        // A part of a sum already within the limit.
        *sum = add(*sum, *line).ok_or_else(|| too_large("items", "a split child's total"))?;
    }
    let children = if by_warehouse.len() > 1 {
        by_warehouse
            .into_values()
            .enumerate()
            .map(|(i, (items, goods))| {
                let shipping_cents = if i == 0 { shipping } else { 0 };
                let amount_cents = add(goods, shipping_cents)
                    .ok_or_else(|| too_large("items", "a split child's total"))?;
                Ok(Part {
                    items,
                    amount_cents,
                    shipping_cents,
                })
            })
            .collect::<Result<Vec<_>, (String, String)>>()?
    } else {
        Vec::new()
    };
    Ok(Plan {
        parent: Part {
            items: req.items.iter().collect(),
            amount_cents: total,
            shipping_cents: shipping,
        },
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Address;
    use proptest::prelude::*;

    fn order(items: Vec<(i64, i64, i64)>, shipping: i64) -> CreateOrder {
        let text = |c: i64| {
            orderbus_contracts::Decimal::from_cents(c)
                .as_str()
                .to_owned()
        };
        CreateOrder {
            uid: 1,
            items: items
                .into_iter()
                .enumerate()
                .map(|(i, (warehouse_id, quantity, unit))| OrderItemInput {
                    product_sku: i as i64 + 1,
                    product_skn: 1,
                    warehouse_id,
                    quantity,
                    unit_price: text(unit),
                })
                .collect(),
            shipping_cost: text(shipping),
            delivery_address: Address {
                user_name: "a".into(),
                mobile: "1".into(),
                phone: String::new(),
                province: "p".into(),
                city: "c".into(),
                district: String::new(),
                address: "x".into(),
                zip_code: String::new(),
                area_code: String::new(),
                email: String::new(),
                address_id: 0,
            },
            remark: String::new(),
        }
    }

    #[test]
    fn limits_name_the_field() {
        let field = |o: &CreateOrder| plan(o).err().map(|(f, _)| f);
        // One unit price at the limit is fine; shipping on top is not.
        assert!(plan(&order(vec![(1, 1, MAX_AMOUNT_CENTS)], 0)).is_ok());
        assert_eq!(
            field(&order(vec![(1, 1, MAX_AMOUNT_CENTS)], 1)).as_deref(),
            Some("shipping_cost")
        );
        assert_eq!(
            field(&order(vec![(1, 2, MAX_AMOUNT_CENTS)], 0)).as_deref(),
            Some("items[0]")
        );
        // Two children that fit, a parent that does not.
        assert_eq!(
            field(&order(
                vec![(1, 1, MAX_AMOUNT_CENTS), (2, 1, MAX_AMOUNT_CENTS)],
                0
            ))
            .as_deref(),
            Some("items")
        );
        let mut o = order(vec![(1, 1, 100)], 0);
        o.shipping_cost = "90000000000000000.00".into();
        assert_eq!(field(&o).as_deref(), Some("shipping_cost"));
        o.shipping_cost = "0".into();
        o.items[0].unit_price = "92233720368547758.07".into();
        assert_eq!(field(&o).as_deref(), Some("items[0].unit_price"));
    }

    proptest! {
        /// Any lines and shipping: either a plan whose children add up to the parent, every
        /// amount within the limit, or a refusal naming a field; never a panic.
        #[test]
        fn plans_add_up_or_refuse(
            items in prop::collection::vec((1i64..4, 1i64..=10_000, prop_oneof![0i64..100_000, 0i64..=MAX_AMOUNT_CENTS]), 1..8),
            shipping in 0i64..=MAX_AMOUNT_CENTS,
        ) {
            let o = order(items, shipping);
            match plan(&o) {
                Ok(p) => {
                    prop_assert!(p.parent.amount_cents <= MAX_AMOUNT_CENTS);
                    if !p.children.is_empty() {
                        let sum: i64 = p.children.iter().map(|c| c.amount_cents).sum();
                        prop_assert_eq!(sum, p.parent.amount_cents);
                        let lines: usize = p.children.iter().map(|c| c.items.len()).sum();
                        prop_assert_eq!(lines, o.items.len());
                    }
                }
                Err((field, _)) => prop_assert!(field == "items" || field == "shipping_cost" || field.starts_with("items[")),
            }
        }
    }
}
