//! Readiness primitive shared by the bus tasks and the runtime's `/readyz`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Named readiness flags. `/readyz` is true only when every registered component is ready;
/// a supervisor sets its flag false while it rebuilds its connection.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, bool>>>,
    lost: Arc<AtomicU64>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register or update a component.
    pub fn set(&self, component: &str, ready: bool) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.insert(component.to_owned(), ready) == Some(true) && !ready {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True when every registered component is ready (and at least one is registered).
    pub fn is_ready(&self) -> bool {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        !map.is_empty() && map.values().all(|r| *r)
    }

    /// Current flags, for the `/readyz` body.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many times a ready component became not ready (rebuilds, drain).
    pub fn not_ready_transitions(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}
