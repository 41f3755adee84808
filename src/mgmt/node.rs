//! The node: `/api/nodes` (memory, disk, alarms), the alarm health checks shaped as RabbitMQ's,
//! and changing the memory watermark at run time (rabbitmqctl set_vm_memory_high_watermark).

use super::http::{Request, Response};
use super::reply::{ok, NODE};
use crate::alarm::{Watermark, DISK, MEMORY};
use crate::broker::Broker;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "nodes"]) => ok(json!([node(broker)])),
        ("GET", ["api", "nodes", name]) if *name == NODE => ok(node(broker)),
        ("GET", ["api", "health", "checks", "alarms"]) => {
            alarms_check(broker, "There are alarms in effect in the cluster")
        }
        ("GET", ["api", "health", "checks", "local-alarms"]) => {
            alarms_check(broker, "There are alarms in effect on the node")
        }
        ("PUT", ["api", "warren", "vm-memory-high-watermark"]) => set_watermark(broker, req),
        ("GET", ["api", "health", "checks", "port-listener", port]) => port_listener(broker, port),
        ("GET", ["api", "health", "checks", "protocol-listener", p]) => {
            protocol_listener(broker, p)
        }
        // One node: no mirrors or quorum peers to lose (RabbitMQ's answer for a single node),
        // and no TLS certificates to expire.
        ("GET", ["api", "health", "checks", "node-is-mirror-sync-critical"])
        | ("GET", ["api", "health", "checks", "node-is-quorum-critical"]) => {
            ok(json!({"status": "ok", "reason": "single node cluster"}))
        }
        ("GET", ["api", "health", "checks", "virtual-hosts"])
        | ("GET", ["api", "health", "checks", "certificate-expiration", _, _]) => {
            ok(json!({"status": "ok"}))
        }
        ("GET", ["api", "cluster-name"]) => ok(json!({"name": broker.cluster_name()})),
        ("PUT", ["api", "cluster-name"]) => set_cluster_name(broker, req),
        ("GET", ["api", "extensions"]) => ok(json!([])),
        _ => return None,
    })
}

fn port_listener(broker: &Broker, port: &str) -> Response {
    let ports: Vec<u16> = broker.listeners().iter().map(|(_, p)| *p).collect();
    let Ok(port) = port.parse::<u16>() else {
        return Response::error(400, "bad_request", format!("invalid port: {port}"));
    };
    if ports.contains(&port) {
        return ok(json!({"status": "ok", "port": port}));
    }
    Response::json(
        503,
        &json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}),
    )
}

fn protocol_listener(broker: &Broker, protocol: &str) -> Response {
    // RabbitMQ's aliases for AMQP 0-9-1.
    let protocol = match protocol {
        "amqp091" | "amqp0-9-1" | "amqp0.9.1" | "amqp-0-9-1" => "amqp",
        p => p,
    };
    let protocols: Vec<&str> = broker.listeners().iter().map(|(p, _)| *p).collect();
    if protocols.contains(&protocol) {
        return ok(json!({"status": "ok", "protocol": protocol}));
    }
    Response::json(
        503,
        &json!({"status": "failed", "reason": "No active listener", "missing": protocol,
                "protocols": protocols}),
    )
}

fn set_cluster_name(broker: &Broker, req: &Request) -> Response {
    let name = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string));
    match name {
        Some(n) if n.len() > 255 => {
            Response::error(400, "bad_request", "name is longer than 255 bytes")
        }
        Some(n) if !n.is_empty() => {
            broker.set_cluster_name(&n);
            Response::empty(204)
        }
        _ => Response::error(400, "bad_request", "expected {\"name\": \"...\"}"),
    }
}

fn node(broker: &Broker) -> Value {
    let a = &broker.alarms;
    let active = a.active();
    json!({
        "name": NODE,
        "type": "disc",
        "running": true,
        "mem_used": a.memory_used.load(Relaxed),
        "mem_limit": a.memory_limit(),
        "mem_alarm": active & MEMORY != 0,
        "disk_free": a.disk_free.load(Relaxed),
        "disk_free_limit": a.disk_free_limit,
        "disk_free_alarm": active & DISK != 0,
        "uptime": u64::try_from(broker.started_at.elapsed().as_millis()).unwrap_or(u64::MAX),
        "sockets_used": broker.connection_count(),
    })
}

fn alarms_check(broker: &Broker, reason: &str) -> Response {
    let active = broker.alarms.active();
    if active == 0 {
        return ok(json!({"status": "ok"}));
    }
    let alarms: Vec<Value> = [(MEMORY, "memory"), (DISK, "disk")]
        .into_iter()
        .filter(|(bit, _)| active & bit != 0)
        .map(|(_, what)| json!({"node": NODE, "resource": what}))
        .collect();
    Response::json(
        503,
        &json!({"status": "failed", "reason": reason, "alarms": alarms}),
    )
}

/// Body `{"watermark": "0.6"}` or `{"watermark": "256MiB"}`; takes effect at once.
fn set_watermark(broker: &Broker, req: &Request) -> Response {
    let w = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| match &v["watermark"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let Some(w) = w else {
        return Response::error(
            400,
            "bad_request",
            "expected {\"watermark\": \"0.4\" or \"256MiB\"}",
        );
    };
    match w.parse::<Watermark>() {
        Ok(w) => {
            broker.alarms.set_watermark(w);
            broker.alarms.check(broker.disk_dir());
            Response::empty(204)
        }
        Err(e) => Response::error(400, "bad_request", e),
    }
}
