//! Warren's own endpoints for tests (not RabbitMQ's): reset between tests, wait until a queue
//! reaches a depth or consumer count, and peek at messages without taking them.
//! `POST /api/warren/reset` (`{"keep_topology": bool}`), `POST /api/warren/wait`
//! (`{"vhost", "queue", "messages", "consumers", "timeout_ms"}`: 200 when reached, 408 with
//! what was seen), `GET /api/warren/peek/{vhost}/{queue}?count=K`.

use super::http::{Request, Response};
use super::reply::{not_found, ok, with_vhost};
use crate::broker::Broker;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// The endpoints that wait: answered here, before routing (which does not).
pub async fn handle_async(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (req.method.as_str(), seg.as_slice()) {
        ("POST", ["api", "warren", "reset"]) => {
            let body = parse(req)?;
            let keep = body
                .get("keep_topology")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || req.query_flag("keep-topology");
            Some(match broker.reset(keep).await {
                Ok(()) => Response::empty(204),
                Err(e) => Response::error(500, "internal_server_error", e.to_string()),
            })
        }
        ("POST", ["api", "warren", "wait"]) => Some(wait(broker, &parse(req)?).await),
        // Waits for connections to check consumer_timeout against the moved clock.
        ("POST", ["api", "warren", "clock"]) => Some(match parse(req) {
            Some(b) => move_clock(broker, &b).await,
            None => Response::error(400, "bad_request", "not_json"),
        }),
        _ => None,
    }
}

fn parse(req: &Request) -> Option<Map<String, Value>> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    match serde_json::from_slice(&req.body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

async fn wait(broker: &Broker, b: &Map<String, Value>) -> Response {
    let vhost = b.get("vhost").and_then(Value::as_str).unwrap_or("/");
    let Some(queue) = b.get("queue").and_then(Value::as_str) else {
        return Response::error(400, "bad_request", "[{key_missing,queue}]");
    };
    let messages = b.get("messages").and_then(Value::as_u64);
    let consumers = b.get("consumers").and_then(Value::as_u64);
    let timeout =
        Duration::from_millis(b.get("timeout_ms").and_then(Value::as_u64).unwrap_or(5000))
            .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = broker
            .vhost(vhost)
            .and_then(|vh| vh.queue(queue))
            .map(|q| (u64::from(q.message_count()), u64::from(q.consumer_count())));
        if let Some((m, c)) = seen {
            if messages.is_none_or(|n| n == m) && consumers.is_none_or(|n| n == c) {
                return ok(json!({"status": "ok", "messages": m, "consumers": c}));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let (m, c) = seen.unwrap_or((0, 0));
            return Response::json(
                408,
                &json!({"error": "timeout", "reason": format!(
                    "queue '{queue}' in vhost '{vhost}' has {m} messages and {c} consumers \
                     (waited for {} messages, {} consumers)",
                    messages.map_or("any".into(), |n| n.to_string()),
                    consumers.map_or("any".into(), |n| n.to_string()))}),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn clock_json(broker: &Broker) -> Value {
    let now = broker.clock.now_ms();
    json!({"now_ms": now, "now": crate::clock::format_rfc3339_utc(now),
           "test": broker.clock.is_test()})
}

/// `{"advance": "90m"}`, `{"advance_ms": N}` or `{"set": "2030-01-01T00:00:00Z"}`.
async fn move_clock(broker: &Broker, b: &Map<String, Value>) -> Response {
    let r = if let Some(at) = b.get("set") {
        match at.as_str().and_then(crate::clock::parse_rfc3339_utc) {
            Some(ms) => broker.set_clock_settled(ms).await,
            None => Err("set must be a UTC time like 2030-01-01T00:00:00Z".into()),
        }
    } else {
        let by = match (b.get("advance"), b.get("advance_ms")) {
            (Some(Value::String(s)), _) => crate::clock::parse_duration_ms(s),
            (_, Some(n)) => n.as_u64(),
            _ => None,
        };
        match by {
            Some(ms) => {
                broker
                    .advance_clock_settled(Duration::from_millis(ms))
                    .await
            }
            None => Err("advance must be a duration such as 90m, 1h, 30s or 250ms".into()),
        }
    };
    match r {
        Ok(_) => ok(clock_json(broker)),
        Err(e) => Response::error(400, "bad_request", e),
    }
}

/// What routing handles here: peek, and the test clock.
pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    match (req.method.as_str(), seg) {
        ("GET", ["api", "warren", "clock"]) => Some(ok(clock_json(broker))),
        ("GET", ["api", "warren", "peek", v, q]) => Some(with_vhost(broker, v, |vh| {
            let Some(queue) = vh.queue(q) else {
                return not_found();
            };
            let count = req
                .query
                .iter()
                .find(|(k, _)| k == "count")
                .and_then(|(_, c)| c.parse::<usize>().ok())
                .unwrap_or(1)
                .min(10_000);
            let left = queue.message_count();
            ok(queue
                .peek(count)
                .iter()
                .map(|(m, redelivered)| {
                    super::write::message_json(m, *redelivered, left, false, None)
                })
                .collect())
        })),
        _ => None,
    }
}
