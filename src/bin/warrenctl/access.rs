//! rabbitmqctl's verbs for users, vhosts, permissions and limits, with its argument order
//! (`set_permissions -p VHOST USER CONF WRITE READ`), so scripts written for rabbitmqctl run
//! with warrenctl in its place. `-p`/`--vhost` after the verb names the vhost.

use super::{enc, render, request, send, Args, Res};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Split `-p VHOST` / `--vhost VHOST` / `--vhost=VHOST` out of the verb's arguments.
fn vhost_and_args<'a>(a: &Args, rest: &[&'a str]) -> (String, Vec<&'a str>) {
    let mut vhost = a.vhost.clone();
    let mut args = Vec::new();
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        match *w {
            "-p" | "--vhost" => {
                if let Some(v) = it.next() {
                    vhost = v.to_string();
                }
            }
            w if w.starts_with("--vhost=") => vhost = w["--vhost=".len()..].to_string(),
            w => args.push(w),
        }
    }
    (vhost, args)
}

/// Some(result) when `verb` is one of these commands.
pub fn run(a: &Args, verb: &str, rest: &[&str]) -> Option<Res<String>> {
    let (vhost, args) = vhost_and_args(a, rest);
    let v = enc(&vhost);
    let usage = |u: &str| Some(Err(format!("usage: warrenctl {verb} {u}")));
    Some(match (verb, args.as_slice()) {
        ("add_user", [name, password]) => {
            if request(a, "GET", &format!("users/{}", enc(name)), None).is_ok() {
                return Some(Err(format!("user '{name}' already exists")));
            }
            put_user(a, name, json!({"password": password, "tags": ""}))
                .map(|_| format!("Adding user \"{name}\" ..."))
        }
        ("add_user", _) => return usage("USER PASSWORD"),
        ("delete_user", [name]) => request(a, "DELETE", &format!("users/{}", enc(name)), None)
            .map(|_| format!("Deleting user \"{name}\" ...")),
        ("change_password", [name, password]) => update_user(a, name, |u| {
            u.insert("password".into(), json!(password));
            u.remove("password_hash");
        })
        .map(|_| format!("Changing password for user \"{name}\" ...")),
        ("clear_password", [name]) => update_user(a, name, |u| {
            u.insert("password_hash".into(), json!(""));
        })
        .map(|_| format!("Clearing password for user \"{name}\" ...")),
        ("set_user_tags", [name, tags @ ..]) => update_user(a, name, |u| {
            u.insert("tags".into(), json!(tags.join(",")));
        })
        .map(|_| format!("Setting tags for user \"{name}\" to [{}] ...", tags.join(", "))),
        ("list_users", _) => request(a, "GET", "users", None).map(|r| render(a, &r, &["name", "tags"])),
        ("authenticate_user", [name, password]) => {
            let mut as_user = a.clone();
            as_user.username = name.to_string();
            as_user.password = password.to_string();
            match send(&as_user, "GET", "whoami", None, &[]) {
                Ok(_) => Ok(format!("Authenticating user \"{name}\" ...\nSuccess")),
                Err(_) => Err(format!("Error: failed to authenticate user \"{name}\"")),
            }
        }
        ("add_vhost", [name, opts @ ..]) => {
            let mut body = Map::new();
            let mut it = opts.iter();
            while let Some(o) = it.next() {
                let key = match *o {
                    "--description" => "description",
                    "--tags" => "tags",
                    _ => continue,
                };
                if let Some(val) = it.next() {
                    body.insert(key.into(), json!(val));
                }
            }
            request(a, "PUT", &format!("vhosts/{}", enc(name)), Some(body))
                .map(|_| format!("Adding vhost \"{name}\" ..."))
        }
        ("trace_on" | "trace_off", _) => {
            let on = verb == "trace_on";
            let current = match request(a, "GET", &format!("vhosts/{v}"), None) {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            request(
                a,
                "PUT",
                &format!("vhosts/{v}"),
                obj(json!({"description": current["description"], "tags": current["tags"],
                           "tracing": on})),
            )
            .map(|_| {
                let what = if on { "Starting" } else { "Stopping" };
                format!("{what} tracing for vhost \"{vhost}\" ...")
            })
        }
        ("delete_vhost", [name]) => request(a, "DELETE", &format!("vhosts/{}", enc(name)), None)
            .map(|_| format!("Deleting vhost \"{name}\" ...")),
        ("set_permissions", [user, conf, write, read]) => request(
            a,
            "PUT",
            &format!("permissions/{v}/{}", enc(user)),
            obj(json!({"configure": conf, "write": write, "read": read})),
        )
        .map(|_| format!("Setting permissions for user \"{user}\" in vhost \"{vhost}\" ...")),
        ("set_permissions", _) => return usage("[-p VHOST] USER CONF WRITE READ"),
        ("clear_permissions", [user]) => {
            request(a, "DELETE", &format!("permissions/{v}/{}", enc(user)), None)
                .map(|_| format!("Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ..."))
        }
        ("list_permissions", _) => request(a, "GET", &format!("vhosts/{v}/permissions"), None)
            .map(|r| render(a, &r, &["user", "configure", "write", "read"])),
        ("list_user_permissions", [user]) => {
            request(a, "GET", &format!("users/{}/permissions", enc(user)), None)
                .map(|r| render(a, &r, &["vhost", "configure", "write", "read"]))
        }
        ("set_topic_permissions", [user, exchange, write, read]) => request(
            a,
            "PUT",
            &format!("topic-permissions/{v}/{}", enc(user)),
            obj(json!({"exchange": exchange, "write": write, "read": read})),
        )
        .map(|_| format!("Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vhost}\" ...")),
        ("clear_topic_permissions", [user, exchange @ ..]) => {
            let q = exchange
                .first()
                .map(|x| format!("?exchange={}", enc(x)))
                .unwrap_or_default();
            request(a, "DELETE", &format!("topic-permissions/{v}/{}{q}", enc(user)), None)
                .map(|_| format!("Clearing topic permissions for user \"{user}\" in vhost \"{vhost}\" ..."))
        }
        ("list_topic_permissions", _) => {
            request(a, "GET", &format!("vhosts/{v}/topic-permissions"), None)
                .map(|r| render(a, &r, &["user", "exchange", "write", "read"]))
        }
        ("set_vhost_limits", [limits]) => set_limits(a, &format!("vhost-limits/{v}"), limits)
            .map(|_| format!("Applying limits to vhost \"{vhost}\" ...")),
        ("clear_vhost_limits", _) => {
            for k in ["max-connections", "max-queues"] {
                if let Err(e) = request(a, "DELETE", &format!("vhost-limits/{v}/{k}"), None) {
                    return Some(Err(e));
                }
            }
            Ok(format!("Clearing vhost \"{vhost}\" limits ..."))
        }
        ("list_vhost_limits", _) => request(a, "GET", &format!("vhost-limits/{v}"), None)
            .map(|r| render(a, &r, &["vhost", "value"])),
        ("set_user_limits", [user, limits]) => {
            set_limits(a, &format!("user-limits/{}", enc(user)), limits)
                .map(|_| format!("Setting user limits to \"{limits}\" for user \"{user}\" ..."))
        }
        ("clear_user_limits", [user, which]) => {
            let keys: Vec<&str> = match *which {
                "all" => vec!["max-connections", "max-channels"],
                k => vec![k],
            };
            for k in keys {
                if let Err(e) = request(a, "DELETE", &format!("user-limits/{}/{k}", enc(user)), None)
                {
                    return Some(Err(e));
                }
            }
            Ok(format!("Clearing \"{which}\" limit for user \"{user}\" ..."))
        }
        ("list_user_limits", [user]) => {
            request(a, "GET", &format!("user-limits/{}", enc(user)), None)
                .map(|r| render(a, &r, &["user", "value"]))
        }
        ("set_policy" | "set_operator_policy", _) => {
            let operator = verb == "set_operator_policy";
            let mut priority = 0i64;
            let mut apply_to = "all".to_string();
            let mut positional = Vec::new();
            let mut it = args.iter();
            while let Some(w) = it.next() {
                match *w {
                    "--priority" => priority = it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    "--apply-to" => apply_to = it.next().unwrap_or(&"all").to_string(),
                    w => positional.push(w),
                }
            }
            let [name, pattern, definition] = positional.as_slice() else {
                return usage("[-p VHOST] [--priority N] [--apply-to all|queues|exchanges] NAME PATTERN DEFINITION");
            };
            let definition: Value = match serde_json::from_str(definition) {
                Ok(d) => d,
                Err(e) => return Some(Err(format!("the definition must be JSON: {e}"))),
            };
            let kind = if operator { "operator-policies" } else { "policies" };
            request(
                a,
                "PUT",
                &format!("{kind}/{v}/{}", enc(name)),
                obj(json!({"pattern": pattern, "definition": definition, "priority": priority,
                           "apply-to": apply_to})),
            )
            .map(|_| format!("Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{vhost}\" ..."))
        }
        ("clear_policy" | "clear_operator_policy", [name]) => {
            let kind = if verb == "clear_policy" { "policies" } else { "operator-policies" };
            request(a, "DELETE", &format!("{kind}/{v}/{}", enc(name)), None)
                .map(|_| format!("Clearing policy \"{name}\" on vhost \"{vhost}\" ..."))
        }
        ("list_policies" | "list_operator_policies", _) => {
            let kind = if verb == "list_policies" { "policies" } else { "operator-policies" };
            request(a, "GET", &format!("{kind}/{v}"), None).map(|r| {
                render(a, &r, &["vhost", "name", "pattern", "apply-to", "definition", "priority"])
            })
        }
        ("set_parameter", [component, name, value]) => {
            let value: Value = match serde_json::from_str(value) {
                Ok(v) => v,
                Err(e) => return Some(Err(format!("the value is not JSON: {e}"))),
            };
            let path = format!("parameters/{}/{v}/{}", enc(component), enc(name));
            request(a, "PUT", &path, obj(json!({ "value": value })))
                .map(|_| format!("Setting runtime parameter \"{name}\" for component \"{component}\" ..."))
        }
        ("clear_parameter", [component, name]) => {
            let path = format!("parameters/{}/{v}/{}", enc(component), enc(name));
            request(a, "DELETE", &path, None)
                .map(|_| format!("Clearing runtime parameter \"{name}\" for component \"{component}\" ..."))
        }
        ("list_parameters", _) => request(a, "GET", "parameters", None).map(|r| {
            let mine: Vec<Value> = r
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["vhost"] == *vhost)
                .cloned()
                .collect();
            render(a, &Value::Array(mine), &["component", "name", "value"])
        }),
        ("shovel_status", _) => request(a, "GET", "shovels", None).map(|r| {
            render(a, &r, &["name", "vhost", "type", "state", "src_uri", "dest_uri", "messages_transferred"])
        }),
        ("federation_status", _) => request(a, "GET", "federation-links", None).map(|r| {
            render(a, &r, &["type", "exchange", "upstream_exchange", "queue", "upstream_queue", "vhost", "upstream", "status", "uri", "timestamp", "error"])
        }),
        ("restart_shovel", [name]) => {
            let path = format!("shovels/vhost/{v}/{}/restart", enc(name));
            request(a, "DELETE", &path, None).map(|_| format!("Restarting dynamic Shovel {name} in virtual host {vhost}"))
        }
        _ => return None,
    })
}

fn put_user(a: &Args, name: &str, body: Value) -> Res<Value> {
    request(a, "PUT", &format!("users/{}", enc(name)), obj(body))
}

/// Read a user, change it, write it back (the API replaces a user whole).
fn update_user(a: &Args, name: &str, change: impl FnOnce(&mut Map<String, Value>)) -> Res<Value> {
    let current = request(a, "GET", &format!("users/{}", enc(name)), None)?;
    let mut u = obj(current).ok_or("malformed user")?;
    u.remove("limits");
    u.remove("name");
    change(&mut u);
    put_user(a, name, Value::Object(u))
}

/// rabbitmqctl's limits argument: a JSON object of limit → number.
fn set_limits(a: &Args, path: &str, limits: &str) -> Res<()> {
    let parsed: Map<String, Value> =
        serde_json::from_str(limits).map_err(|e| format!("limits must be a JSON object: {e}"))?;
    for (k, value) in parsed {
        request(
            a,
            "PUT",
            &format!("{path}/{k}"),
            obj(json!({"value": value})),
        )?;
    }
    Ok(())
}
