//! `warrenctl`: manage a running Warren over its management HTTP API, in the style of
//! rabbitmqadmin (`list queues name messages`, `declare queue name=q durable=false`) with
//! rabbitmqctl's common verbs as aliases (`list_queues`, `purge_queue q`). Works against
//! RabbitMQ's management plugin too.

use clap::Parser;
use serde_json::{json, Map, Value};
use std::process::ExitCode;

mod access;
mod api;
mod render;
mod words;

use api::{request, send};
use render::{list, render};
use words::*;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "warrenctl",
    version,
    about = "Manage a Warren broker over its management API",
    after_help = "Commands:
  overview                                 broker totals and versions
  list <queues|exchanges|bindings|connections|consumers|vhosts> [column ...]
  show <queue|exchange> name=N             one object as JSON
  declare queue name=N [durable=true] [auto_delete=false] [arguments=JSON]
  declare exchange name=N type=T [durable=true] [auto_delete=false] [internal=false] [arguments=JSON]
  declare binding source=X destination=D [destination_type=queue|exchange] [routing_key=K] [arguments=JSON]
  delete queue name=N [if_empty=true] [if_unused=true]
  delete exchange name=N [if_unused=true]
  delete binding source=X destination=D [destination_type=queue] [properties_key=K | routing_key=K]
  purge queue name=N
  publish [exchange=X] routing_key=K payload=P [properties=JSON] [payload_encoding=string|base64]
  get queue=N [count=1] [ackmode=ack_requeue_true]
  close connection name=N
  export                                   definitions as JSON
  import FILE                              apply definitions (RabbitMQ's export format)
rabbitmqctl aliases: list_queues, list_exchanges, list_bindings, list_connections,
  list_consumers, list_vhosts, purge_queue N, delete_queue N, close_connection N [reason],
  set_vm_memory_high_watermark FRACTION | absolute SIZE, ping, await_startup [SECONDS],
  add_user U P, delete_user U, change_password U P, clear_password U, set_user_tags U TAG...,
  list_users, authenticate_user U P, add_vhost V [--description D] [--tags T], delete_vhost V,
  set_permissions [-p V] U CONF WRITE READ, clear_permissions [-p V] U, list_permissions [-p V],
  list_user_permissions U, set_topic_permissions [-p V] U EXCHANGE WRITE READ,
  clear_topic_permissions [-p V] U [EXCHANGE], list_topic_permissions [-p V],
  set_vhost_limits [-p V] JSON, clear_vhost_limits [-p V], list_vhost_limits [-p V],
  set_user_limits U JSON, clear_user_limits U NAME|all, list_user_limits U,
trace_on [-p V], trace_off [-p V] (the firehose, exchange amq.rabbitmq.trace),
Warren's test helpers: clock show | advance 90m | set 2030-01-01T00:00:00Z (with --test-clock),
  reset [--keep-topology], wait queue=Q [messages=N] [consumers=C]
  [timeout=5s] (exit 1 on timeout), peek queue=Q [count=K] (messages left in place, as JSON),
  set_policy [-p V] [--priority N] [--apply-to all|queues|exchanges] NAME PATTERN DEFINITION,
  clear_policy [-p V] NAME, list_policies [-p V], set_operator_policy (as set_policy),
  clear_operator_policy [-p V] NAME, list_operator_policies [-p V],
  set_parameter [-p V] COMPONENT NAME JSON, clear_parameter [-p V] COMPONENT NAME,
  list_parameters [-p V], shovel_status, restart_shovel [-p V] NAME, federation_status"
)]
struct Args {
    #[arg(
        long,
        short = 'H',
        env = "WARREN_MGMT_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    #[arg(long, short = 'P', env = "WARREN_MGMT_PORT", default_value_t = 15672)]
    port: u16,
    #[arg(long, short = 'u', default_value = "guest")]
    username: String,
    #[arg(long, short = 'p', default_value = "guest")]
    password: String,
    #[arg(long, default_value = "/")]
    vhost: String,
    /// table, tsv (no header, for scripts) or json.
    #[arg(long, short = 'f', default_value = "table")]
    format: String,
    /// The command and its arguments (see below).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warrenctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Res<String> {
    let words: Vec<&str> = a.command.iter().map(String::as_str).collect();
    let v = enc(&a.vhost);
    let (verb, rest) = match words.as_slice() {
        [] => return Err("no command; try --help".into()),
        [verb, rest @ ..] => (*verb, rest),
    };
    match (verb, rest) {
        // rabbitmqctl ping / rabbitmq-diagnostics check_running: one try.
        ("ping" | "check_running", _) => {
            return request(a, "GET", "overview", None).map(|_| "Ping succeeded".to_string())
        }
        // rabbitmqctl await_startup: wait until the broker answers (default 30 s), exit 1 if
        // it never does.
        ("await_startup" | "await-startup", rest) => {
            let secs: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(30);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            loop {
                match request(a, "GET", "overview", None) {
                    Ok(_) => return Ok(String::new()),
                    Err(e) if std::time::Instant::now() >= deadline => {
                        return Err(format!("not started within {secs} s: {e}"))
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        }
        _ => {}
    }
    if let Some(r) = access::run(a, verb, rest) {
        return r;
    }
    // rabbitmqctl's verbs become rabbitmqadmin's.
    if let Some(kind) = verb.strip_prefix("list_") {
        return list(a, &v, kind, rest);
    }
    match (verb, rest) {
        ("purge_queue", [name, ..]) => {
            return request(
                a,
                "DELETE",
                &format!("queues/{v}/{}/contents", enc(name)),
                None,
            )
            .map(|_| format!("queue {name} purged"))
        }
        ("delete_queue", [name, ..]) => {
            return request(a, "DELETE", &format!("queues/{v}/{}", enc(name)), None)
                .map(|_| format!("queue {name} deleted"))
        }
        ("close_connection", [name, reason @ ..]) => {
            return close(a, name, reason.first().copied())
        }
        // rabbitmqctl set_vm_memory_high_watermark 0.6 | absolute 256MiB
        ("set_vm_memory_high_watermark", ["absolute", w] | [w]) => {
            return request(
                a,
                "PUT",
                "warren/vm-memory-high-watermark",
                Some(Map::from_iter([("watermark".to_string(), Value::from(*w))])),
            )
            .map(|_| format!("memory high watermark set to {w}"))
        }
        _ => {}
    }
    let kv = |from: &[&str]| -> Res<Map<String, Value>> { pairs(from) };
    match (verb, rest) {
        ("overview" | "status", _) => {
            let o = request(a, "GET", "overview", None)?;
            if a.format == "json" {
                return Ok(o.to_string());
            }
            let t = &o["object_totals"];
            let q = &o["queue_totals"];
            Ok(format!(
                "product: {} {} (RabbitMQ {})\nnode: {}\nconnections: {}  channels: {}  exchanges: {}  queues: {}  consumers: {}\nmessages: {}  ready: {}  unacknowledged: {}",
                s(&o["product_name"]), s(&o["product_version"]), s(&o["rabbitmq_version"]),
                s(&o["node"]), t["connections"], t["channels"], t["exchanges"], t["queues"],
                t["consumers"], q["messages"], q["messages_ready"], q["messages_unacknowledged"]
            ))
        }
        ("list", [kind, cols @ ..]) => list(a, &v, kind, cols),
        ("show", [kind @ ("queue" | "exchange"), rest @ ..]) => {
            let m = kv(rest)?;
            let name = need(&m, "name")?;
            let o = request(a, "GET", &format!("{kind}s/{v}/{}", enc(&name)), None)?;
            Ok(serde_json::to_string_pretty(&o).unwrap_or_default())
        }
        ("declare", ["queue", rest @ ..]) => {
            let m = kv(rest)?;
            let name = need(&m, "name")?;
            let body = pick(&m, &["durable", "auto_delete", "arguments"]);
            request(a, "PUT", &format!("queues/{v}/{}", enc(&name)), Some(body))?;
            Ok(format!("queue {name} declared"))
        }
        ("declare", ["exchange", rest @ ..]) => {
            let m = kv(rest)?;
            let name = need(&m, "name")?;
            need(&m, "type")?;
            let body = pick(
                &m,
                &["type", "durable", "auto_delete", "internal", "arguments"],
            );
            request(
                a,
                "PUT",
                &format!("exchanges/{v}/{}", enc(&name)),
                Some(body),
            )?;
            Ok(format!("exchange {name} declared"))
        }
        ("declare", ["binding", rest @ ..]) => {
            let m = kv(rest)?;
            let (src, dst) = (need(&m, "source")?, need(&m, "destination")?);
            let t = dest_type(&m)?;
            let body = pick(&m, &["routing_key", "arguments"]);
            let path = format!("bindings/{v}/e/{}/{t}/{}", enc(&src), enc(&dst));
            request(a, "POST", &path, Some(body))?;
            Ok(format!("binding {src} -> {dst} declared"))
        }
        ("delete", ["queue", rest @ ..]) => {
            let m = kv(rest)?;
            let name = need(&m, "name")?;
            let q = query(&m, &["if_empty", "if_unused"]);
            request(a, "DELETE", &format!("queues/{v}/{}{q}", enc(&name)), None)?;
            Ok(format!("queue {name} deleted"))
        }
        ("delete", ["exchange", rest @ ..]) => {
            let m = kv(rest)?;
            let name = need(&m, "name")?;
            let q = query(&m, &["if_unused"]);
            request(
                a,
                "DELETE",
                &format!("exchanges/{v}/{}{q}", enc(&name)),
                None,
            )?;
            Ok(format!("exchange {name} deleted"))
        }
        ("delete", ["binding", rest @ ..]) => {
            let m = kv(rest)?;
            let (src, dst) = (need(&m, "source")?, need(&m, "destination")?);
            let t = dest_type(&m)?;
            let props = match (m.get("properties_key"), m.get("routing_key")) {
                (Some(p), _) => s(p),
                (None, Some(k)) if !s(k).is_empty() => s(k),
                _ => "~".into(),
            };
            let path = format!(
                "bindings/{v}/e/{}/{t}/{}/{}",
                enc(&src),
                enc(&dst),
                enc(&props)
            );
            request(a, "DELETE", &path, None)?;
            Ok(format!("binding {src} -> {dst} deleted"))
        }
        ("purge", ["queue", rest @ ..]) => {
            let name = need(&kv(rest)?, "name")?;
            request(
                a,
                "DELETE",
                &format!("queues/{v}/{}/contents", enc(&name)),
                None,
            )?;
            Ok(format!("queue {name} purged"))
        }
        ("publish", rest) => {
            let m = kv(rest)?;
            let x = m.get("exchange").map(s).filter(|x| !x.is_empty());
            let x = x.unwrap_or_else(|| "amq.default".into());
            let mut body = pick(
                &m,
                &["routing_key", "payload", "payload_encoding", "properties"],
            );
            for (k, d) in [
                ("routing_key", ""),
                ("payload", ""),
                ("payload_encoding", "string"),
            ] {
                body.entry(k).or_insert_with(|| d.into());
            }
            body.entry("properties").or_insert_with(|| json!({}));
            let r = request(
                a,
                "POST",
                &format!("exchanges/{v}/{}/publish", enc(&x)),
                Some(body),
            )?;
            Ok(if r["routed"] == true {
                "message published".into()
            } else {
                "message published but NOT routed".into()
            })
        }
        ("get", rest) => {
            let m = kv(rest)?;
            let q = need(&m, "queue")?;
            let mut body = pick(&m, &["count", "ackmode", "encoding", "truncate"]);
            body.entry("count").or_insert_with(|| 1.into());
            body.entry("ackmode")
                .or_insert_with(|| "ack_requeue_true".into());
            body.entry("encoding").or_insert_with(|| "auto".into());
            let r = request(
                a,
                "POST",
                &format!("queues/{v}/{}/get", enc(&q)),
                Some(body),
            )?;
            let cols = [
                "routing_key",
                "exchange",
                "message_count",
                "payload",
                "payload_bytes",
                "redelivered",
            ];
            Ok(render(a, &r, &cols))
        }
        ("close", ["connection", rest @ ..]) => {
            let m = kv(rest)?;
            close(
                a,
                &need(&m, "name")?,
                m.get("reason").and_then(Value::as_str),
            )
        }
        ("import", [file]) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let defs: Value =
                serde_json::from_str(&text).map_err(|e| format!("{file}: not JSON: {e}"))?;
            let Value::Object(body) = defs else {
                return Err(format!("{file}: definitions must be a JSON object"));
            };
            request(a, "POST", "definitions", Some(body))?;
            Ok(format!("definitions from {file} imported"))
        }
        ("export", _) => {
            let d = request(a, "GET", "definitions", None)?;
            Ok(serde_json::to_string_pretty(&d).unwrap_or_default())
        }
        // Warren's test helpers (not rabbitmqctl's).
        ("clock", ["show"] | []) => {
            let c = request(a, "GET", "warren/clock", None)?;
            Ok(format!(
                "{} ({})",
                s(&c["now"]),
                if c["test"] == true {
                    "test clock"
                } else {
                    "system clock"
                }
            ))
        }
        ("clock", ["advance", by]) => request(
            a,
            "POST",
            "warren/clock",
            Some(Map::from_iter([("advance".to_string(), Value::from(*by))])),
        )
        .map(|c| s(&c["now"])),
        ("clock", ["set", at]) => request(
            a,
            "POST",
            "warren/clock",
            Some(Map::from_iter([("set".to_string(), Value::from(*at))])),
        )
        .map(|c| s(&c["now"])),
        ("reset", flags) => {
            let keep = flags.contains(&"--keep-topology");
            request(
                a,
                "POST",
                "warren/reset",
                Some(Map::from_iter([(
                    "keep_topology".to_string(),
                    Value::from(keep),
                )])),
            )
            .map(|_| "reset".to_string())
        }
        ("wait", rest) => {
            let m = kv(rest)?;
            let mut body = Map::new();
            body.insert("vhost".into(), Value::from(a.vhost.clone()));
            body.insert("queue".into(), Value::from(need(&m, "queue")?));
            for key in ["messages", "consumers"] {
                if let Some(v) = m.get(key) {
                    let n: u64 = s(v)
                        .parse()
                        .map_err(|_| format!("{key} must be a number"))?;
                    body.insert(key.into(), Value::from(n));
                }
            }
            let timeout = m
                .get("timeout")
                .map(|t| millis(&s(t)))
                .transpose()?
                .unwrap_or(5000);
            body.insert("timeout_ms".into(), Value::from(timeout));
            request(a, "POST", "warren/wait", Some(body)).map(|r| {
                format!(
                    "reached: {} messages, {} consumers",
                    r["messages"], r["consumers"]
                )
            })
        }
        ("peek", rest) => {
            let m = kv(rest)?;
            let q = need(&m, "queue")?;
            let count = m.get("count").map(s).unwrap_or_else(|| "1".into());
            let r = request(
                a,
                "GET",
                &format!("warren/peek/{v}/{}?count={}", enc(&q), enc(&count)),
                None,
            )?;
            Ok(serde_json::to_string_pretty(&r).unwrap_or_default())
        }
        _ => Err(format!("unknown command '{}'; try --help", words.join(" "))),
    }
}

fn close(a: &Args, name: &str, reason: Option<&str>) -> Res<String> {
    let headers: Vec<(&str, &str)> = reason.map(|r| ("x-reason", r)).into_iter().collect();
    send(
        a,
        "DELETE",
        &format!("connections/{}", enc(name)),
        None,
        &headers,
    )?;
    Ok(format!("connection {name} closed"))
}
