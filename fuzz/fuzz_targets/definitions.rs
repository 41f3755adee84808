//! Definitions import of arbitrary JSON into a broker: refused or applied, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn broker() -> &'static Arc<warren::Broker> {
    static B: OnceLock<Arc<warren::Broker>> = OnceLock::new();
    B.get_or_init(|| warren::Broker::new(warren::Config::default()).expect("broker"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = warren::mgmt::definitions::import(broker(), &v);
    }
});
