//! Management requests past hyper: an arbitrary target, method and body through the router and
//! every handler: an answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use warren::mgmt::http::{target, Request};

fn broker() -> &'static Arc<warren::Broker> {
    static B: OnceLock<Arc<warren::Broker>> = OnceLock::new();
    B.get_or_init(|| warren::Broker::new(warren::Config::default()).expect("broker"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (line, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (path, query) = line.split_once('?').unwrap_or((line, ""));
    let Ok((segments, query)) = target(path, query) else {
        return;
    };
    let method = ["GET", "PUT", "POST", "DELETE"][usize::from(m) % 4];
    let req = Request {
        method: method.to_string(),
        segments,
        query,
        authorization: None,
        user: broker().users.user("guest"),
        reason: None,
        body: body.as_bytes().to_vec(),
        channels: None,
    };
    let _ = warren::mgmt::api::handle(broker(), &req);
});
