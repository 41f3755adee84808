//! Every path the management API serves, with its methods: the source of the `allow` header
//! of a 405, of docs/management-api.md (written by a test, so it cannot drift), and of a test
//! that calls each one. `{x}` stands for one path segment.

/// (methods, path pattern, what it is).
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/api/overview", "totals, versions, listeners"),
    ("GET", "/api/whoami", "the authenticated user and its tags"),
    ("GET PUT", "/api/cluster-name", "the cluster name"),
    ("GET", "/api/nodes", "this node"),
    ("GET", "/api/nodes/{node}", "this node"),
    ("GET", "/api/extensions", "management extensions (none)"),
    (
        "GET POST",
        "/api/definitions",
        "export / import definitions",
    ),
    ("GET", "/api/connections", "open connections"),
    (
        "GET DELETE",
        "/api/connections/{name}",
        "one connection; DELETE closes it",
    ),
    ("GET", "/api/connections/{name}/channels", "its channels"),
    (
        "GET DELETE",
        "/api/connections/username/{user}",
        "a user's connections",
    ),
    ("GET", "/api/channels", "open channels"),
    ("GET", "/api/channels/{name}", "one channel"),
    ("GET", "/api/consumers", "consumers"),
    ("GET", "/api/consumers/{vhost}", "consumers in a vhost"),
    ("GET", "/api/exchanges", "exchanges"),
    ("GET", "/api/exchanges/{vhost}", "exchanges in a vhost"),
    (
        "GET PUT DELETE",
        "/api/exchanges/{vhost}/{name}",
        "one exchange",
    ),
    (
        "GET",
        "/api/exchanges/{vhost}/{name}/bindings/source",
        "bindings from it",
    ),
    (
        "GET",
        "/api/exchanges/{vhost}/{name}/bindings/destination",
        "bindings to it",
    ),
    (
        "POST",
        "/api/exchanges/{vhost}/{name}/publish",
        "publish a message",
    ),
    (
        "GET",
        "/api/federation-links",
        "federation links (exchanges and queues) and their state",
    ),
    (
        "GET",
        "/api/federation-links/{vhost}",
        "the federation links of a vhost",
    ),
    (
        "DELETE",
        "/api/federation-links/vhost/{vhost}/{id}/{node}/restart",
        "restart a federation link",
    ),
    ("GET", "/api/shovels", "dynamic shovels and their state"),
    ("GET", "/api/shovels/{vhost}", "the shovels of a vhost"),
    (
        "DELETE",
        "/api/shovels/vhost/{vhost}/{name}/restart",
        "restart a shovel",
    ),
    ("GET", "/api/queues", "queues"),
    ("GET", "/api/queues/{vhost}", "queues in a vhost"),
    ("GET PUT DELETE", "/api/queues/{vhost}/{name}", "one queue"),
    ("GET", "/api/queues/{vhost}/{name}/bindings", "its bindings"),
    ("DELETE", "/api/queues/{vhost}/{name}/contents", "purge"),
    ("POST", "/api/queues/{vhost}/{name}/get", "get messages"),
    (
        "POST",
        "/api/queues/{vhost}/{name}/move",
        "move every ready message to another queue (Warren's own)",
    ),
    ("GET", "/api/bindings", "bindings"),
    ("GET", "/api/bindings/{vhost}", "bindings in a vhost"),
    (
        "GET POST",
        "/api/bindings/{vhost}/e/{exchange}/q/{queue}",
        "exchange-to-queue bindings",
    ),
    (
        "GET POST",
        "/api/bindings/{vhost}/e/{exchange}/e/{exchange}",
        "exchange-to-exchange bindings",
    ),
    (
        "DELETE",
        "/api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}",
        "unbind",
    ),
    (
        "DELETE",
        "/api/bindings/{vhost}/e/{exchange}/e/{exchange}/{props}",
        "unbind",
    ),
    ("GET", "/api/vhosts", "vhosts"),
    ("GET PUT DELETE", "/api/vhosts/{vhost}", "one vhost"),
    (
        "GET",
        "/api/vhosts/{vhost}/permissions",
        "permissions in a vhost",
    ),
    (
        "GET",
        "/api/vhosts/{vhost}/topic-permissions",
        "topic permissions in a vhost",
    ),
    (
        "GET",
        "/api/vhosts/{vhost}/connections",
        "connections to a vhost",
    ),
    ("GET", "/api/vhosts/{vhost}/channels", "channels in a vhost"),
    ("GET", "/api/users", "users"),
    (
        "GET",
        "/api/users/without-permissions",
        "users without permissions",
    ),
    ("POST", "/api/users/bulk-delete", "delete users"),
    ("GET PUT DELETE", "/api/users/{user}", "one user"),
    (
        "GET",
        "/api/users/{user}/permissions",
        "a user's permissions",
    ),
    (
        "GET",
        "/api/users/{user}/topic-permissions",
        "a user's topic permissions",
    ),
    ("GET", "/api/permissions", "permissions"),
    (
        "GET PUT DELETE",
        "/api/permissions/{vhost}/{user}",
        "one user's permissions in a vhost",
    ),
    ("GET", "/api/topic-permissions", "topic permissions"),
    (
        "GET PUT DELETE",
        "/api/topic-permissions/{vhost}/{user}",
        "one user's topic permissions",
    ),
    ("GET", "/api/vhost-limits", "vhost limits"),
    ("GET", "/api/vhost-limits/{vhost}", "a vhost's limits"),
    (
        "PUT DELETE",
        "/api/vhost-limits/{vhost}/{limit}",
        "one vhost limit",
    ),
    ("GET", "/api/user-limits", "user limits"),
    ("GET", "/api/user-limits/{user}", "a user's limits"),
    (
        "PUT DELETE",
        "/api/user-limits/{user}/{limit}",
        "one user limit",
    ),
    ("GET", "/api/policies", "policies"),
    ("GET", "/api/policies/{vhost}", "policies in a vhost"),
    (
        "GET PUT DELETE",
        "/api/policies/{vhost}/{name}",
        "one policy",
    ),
    ("GET", "/api/operator-policies", "operator policies"),
    (
        "GET",
        "/api/operator-policies/{vhost}",
        "operator policies in a vhost",
    ),
    (
        "GET PUT DELETE",
        "/api/operator-policies/{vhost}/{name}",
        "one operator policy",
    ),
    ("GET", "/api/parameters", "runtime parameters"),
    ("GET", "/api/parameters/{component}", "of one component"),
    (
        "GET",
        "/api/parameters/{component}/{vhost}",
        "of one component in a vhost",
    ),
    (
        "GET PUT DELETE",
        "/api/parameters/{component}/{vhost}/{name}",
        "one parameter",
    ),
    ("GET", "/api/global-parameters", "global parameters"),
    (
        "GET PUT DELETE",
        "/api/global-parameters/{name}",
        "one global parameter",
    ),
    ("GET", "/api/feature-flags", "feature flags"),
    (
        "POST",
        "/api/rebalance/queues",
        "rebalance (one node: nothing to move)",
    ),
    ("GET", "/api/aliveness-test/{vhost}", "aliveness test"),
    ("GET", "/api/healthchecks/node", "node health"),
    ("GET", "/api/health/checks/alarms", "alarms in effect"),
    (
        "GET",
        "/api/health/checks/local-alarms",
        "alarms on this node",
    ),
    (
        "GET",
        "/api/health/checks/certificate-expiration/{within}/{unit}",
        "certificates",
    ),
    (
        "GET",
        "/api/health/checks/port-listener/{port}",
        "a port is listened on",
    ),
    (
        "GET",
        "/api/health/checks/protocol-listener/{protocol}",
        "a protocol is listened for",
    ),
    (
        "GET",
        "/api/health/checks/virtual-hosts",
        "every vhost runs",
    ),
    (
        "GET",
        "/api/health/checks/node-is-mirror-sync-critical",
        "mirror sync",
    ),
    (
        "GET",
        "/api/health/checks/node-is-quorum-critical",
        "quorum",
    ),
    (
        "PUT",
        "/api/warren/vm-memory-high-watermark",
        "set the memory alarm threshold",
    ),
    ("GET", "/metrics", "Prometheus metrics"),
];

fn matches(pattern: &str, seg: &[&str]) -> bool {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    parts.len() == seg.len()
        && parts
            .iter()
            .zip(seg)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || p == s)
}

/// The methods served on this path (empty: an unknown path).
pub fn methods(seg: &[&str]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (methods, pattern, _) in ENDPOINTS {
        if matches(pattern, seg) {
            for m in methods.split(' ') {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out
}

/// RabbitMQ's `allow` header for these methods.
pub fn allow_header(methods: &[&str]) -> String {
    let mut out = Vec::new();
    if methods.contains(&"GET") {
        out.push("HEAD");
    }
    for m in ["GET", "PUT", "POST", "DELETE"] {
        if methods.contains(&m) {
            out.push(m);
        }
    }
    out.push("OPTIONS");
    out.join(", ")
}

/// The endpoint table as Markdown (docs/management-api.md).
pub fn markdown() -> String {
    let mut s = String::from(
        "# Management API endpoints\n\nGenerated from `src/mgmt/endpoints.rs` by the test \
         `mgmt_endpoints::the_endpoint_table_is_current` (set WARREN_UPDATE_DOCS=1 to rewrite \
         it). Paths, methods and JSON shapes follow RabbitMQ 3.10's management plugin; `{vhost}` \
         and names are percent-encoded (`/` is `%2F`).\n\n| methods | path | what |\n|---|---|---|\n",
    );
    for (methods, path, what) in ENDPOINTS {
        s.push_str(&format!("| {methods} | `{path}` | {what} |\n"));
    }
    s
}
