-- A JIT split parent is paid but never fulfilled: its children are. The stand-in learns that
-- an order is a parent from a child's order.submit naming it.
ALTER TABLE erp_sim_orders ADD COLUMN is_split_parent BOOLEAN NOT NULL DEFAULT false;
