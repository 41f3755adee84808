//! Users, vhosts and permissions across restarts, from RabbitMQ's own definitions export, from
//! RabbitMQ's container variables, and through warrenctl's rabbitmqctl verbs. Warren only:
//! each test runs its own broker.

use crate::common::*;
use crate::process::temp_dir;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

fn config(dir: &std::path::Path) -> warren::Config {
    warren::Config {
        port: 0,
        mgmt_port: Some(0),
        data_dir: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

async fn login(
    port: u16,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<Connection, lapin::Error> {
    let url = format!(
        "amqp://{user}:{password}@127.0.0.1:{port}/{}",
        vhost.replace('/', "%2F")
    );
    Connection::connect(&url, ConnectionProperties::default()).await
}

/// The warren binary on `dir`, with its management API on a port of its own.
async fn warren_binary(dir: &std::path::Path) -> (crate::process::Warren, String) {
    let mgmt_port = crate::process::free_port();
    let w = crate::process::Warren::start(dir, &["--mgmt-port", &mgmt_port.to_string()]).await;
    let mgmt = format!("127.0.0.1:{mgmt_port}");
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(&mgmt).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (w, mgmt)
}

#[tokio::test]
async fn users_vhosts_and_permissions_survive_a_restart() {
    if external() {
        return;
    }
    let dir = temp_dir("access");
    let (w, mgmt) = warren_binary(&dir).await;
    let api = |m: &'static str, p: &'static str, b: Option<Value>| {
        let mgmt = mgmt.clone();
        async move { http_at(&mgmt, Some("guest:guest"), m, p, b).await.0 }
    };
    assert_eq!(
        api(
            "PUT",
            "/api/vhosts/shop",
            Some(json!({"description": "d", "tags": "a,b"}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/users/ann",
            Some(json!({"password": "ann-pw", "tags": "management"}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/permissions/shop/ann",
            Some(json!({"configure": "^ann", "write": ".*", "read": ".*"}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/vhost-limits/shop/max-queues",
            Some(json!({"value": 5}))
        )
        .await,
        204
    );
    assert_eq!(
        api(
            "PUT",
            "/api/policies/shop/cap",
            Some(json!({"pattern": "^ann", "definition": {"max-length": 7}}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/cluster-name",
            Some(json!({"name": "shop-cluster"}))
        )
        .await,
        204
    );
    // A durable queue with a persistent message in the new vhost.
    let c = login(w.port, "ann", "ann-pw", "shop")
        .await
        .expect("ann logs in");
    let ch = c.create_channel().await.expect("channel");
    ch.queue_declare(
        "ann-q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    ch.basic_publish(
        "".into(),
        "ann-q".into(),
        Default::default(),
        b"kept",
        persistent(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirmed");
    c.close(200, "".into()).await.expect("close");
    // guest goes; it must stay gone (the default user is created once, on a fresh directory).
    assert_eq!(api("DELETE", "/api/users/guest", None).await, 204);
    w.stop().await;

    let (w, mgmt) = warren_binary(&dir).await;
    assert!(
        login(w.port, "guest", "guest", "/").await.is_err(),
        "guest stays deleted"
    );
    let c = login(w.port, "ann", "ann-pw", "shop")
        .await
        .expect("ann logs in after restart");
    let ch = c.create_channel().await.expect("channel");
    let got = ch
        .basic_get("ann-q".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert_eq!(got.map(|m| m.delivery.data), Some(b"kept".to_vec()));
    let e = ch
        .queue_declare("not-ann".into(), Default::default(), FieldTable::default())
        .await
        .expect_err("permissions survived");
    assert_eq!(code(&e), Some(403));
    let (s, who) = http_at(&mgmt, Some("ann:ann-pw"), "GET", "/api/whoami", None).await;
    assert_eq!(
        (s, who),
        (200, json!({"name": "ann", "tags": ["management"]}))
    );
    let (_, name) = http_at(&mgmt, Some("ann:ann-pw"), "GET", "/api/cluster-name", None).await;
    assert_eq!(
        name,
        json!({"name": "shop-cluster"}),
        "global parameters survive"
    );
    let (_, q) = http_at(
        &mgmt,
        Some("ann:ann-pw"),
        "GET",
        "/api/queues/shop/ann-q",
        None,
    )
    .await;
    assert_eq!(
        q["policy"],
        json!("cap"),
        "the policy survived and applies: {q}"
    );
    assert_eq!(q["effective_policy_definition"], json!({"max-length": 7}));
    let (s, limits) = http_at(&mgmt, Some("ann:ann-pw"), "GET", "/api/vhost-limits", None).await;
    assert_eq!(
        (s, limits),
        (200, json!([{"vhost": "shop", "value": {"max-queues": 5}}]))
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rabbitmq_export_imports_and_its_users_log_in_with_their_passwords() {
    if external() {
        return;
    }
    // Written by conformance/rabbitmq-definitions.sh from a real RabbitMQ 3.10.8 node.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/fixtures/rabbitmq-3.10.8-definitions.json"
    );
    let dir = temp_dir("import");
    let w = warren::start(warren::Config {
        definitions: Some(fixture.into()),
        ..config(&dir)
    })
    .await
    .expect("start with RabbitMQ's definitions");
    let port = w.local_addr().port();
    let mgmt = w.mgmt_addr().expect("mgmt").to_string();
    // sha256 (alice, bob, carol) and sha512 (dave) hashes, original passwords.
    for (user, pw, vhost) in [
        ("alice", "alice-pw", "prod"),
        ("bob", "bob-pw", "prod"),
        ("carol", "carol-pw", "/"),
    ] {
        login(port, user, pw, vhost)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(login(port, user, "wrong", vhost).await.is_err());
    }
    let (s, who) = http_at(&mgmt, Some("dave:dave-pw"), "GET", "/api/whoami", None).await;
    assert_eq!(
        s, 401,
        "dave has no management tag, but the password was right: {who}"
    );
    let (s, _) = http_at(&mgmt, Some("dave:wrong"), "GET", "/api/whoami", None).await;
    assert_eq!(s, 401);
    let (_, users) = http_at(
        &mgmt,
        Some("alice:alice-pw"),
        "GET",
        "/api/users/dave",
        None,
    )
    .await;
    assert_eq!(
        users["hashing_algorithm"],
        json!("rabbit_password_hashing_sha512")
    );
    // bob: configure only ^bob-, topic writes only ^bob\. on amq.topic; limits came too.
    let c = login(port, "bob", "bob-pw", "prod").await.expect("bob");
    let ch = c.create_channel().await.expect("channel");
    let e = ch
        .queue_declare("alice-q".into(), Default::default(), FieldTable::default())
        .await
        .expect_err("bob may not configure alice-q");
    assert_eq!(code(&e), Some(403));
    let (_, limits) = http_at(
        &mgmt,
        Some("alice:alice-pw"),
        "GET",
        "/api/vhost-limits/prod",
        None,
    )
    .await;
    assert_eq!(
        limits,
        json!([{"vhost": "prod", "value": {"max-connections": 100, "max-queues": 50}}])
    );
    let (_, topic) = http_at(
        &mgmt,
        Some("alice:alice-pw"),
        "GET",
        "/api/topic-permissions/prod/bob",
        None,
    )
    .await;
    assert_eq!(topic[0]["write"], json!("^bob\\."));
    // The topology in prod, and an export that imports again.
    let c = login(port, "alice", "alice-pw", "prod")
        .await
        .expect("alice");
    let ch = c.create_channel().await.expect("channel");
    ch.queue_declare(
        "orders".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("orders imported");
    let (s, export) = http_at(
        &mgmt,
        Some("alice:alice-pw"),
        "GET",
        "/api/definitions",
        None,
    )
    .await;
    assert_eq!(s, 200);
    for key in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
    ] {
        assert!(
            export[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: {export}"
        );
    }
    w.stop().await.expect("stop");
    let dir2 = temp_dir("reimport");
    let again = dir2.join("defs.json");
    std::fs::create_dir_all(&dir2).expect("dir");
    std::fs::write(&again, export.to_string()).expect("write export");
    let w = warren::start(warren::Config {
        definitions: Some(again),
        ..config(&dir2)
    })
    .await
    .expect("our export imports");
    login(w.local_addr().port(), "dave", "dave-pw", "/")
        .await
        .expect_err("dave has no permissions anywhere");
    login(w.local_addr().port(), "alice", "alice-pw", "prod")
        .await
        .expect("alice again");
    w.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[tokio::test]
async fn rabbitmq_container_variables_create_the_first_user_and_vhost() {
    if external() {
        return;
    }
    let dir = temp_dir("env");
    let port = crate::process::free_port();
    let start = |user: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--mgmt-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .env("RABBITMQ_DEFAULT_USER", user)
            .env("RABBITMQ_DEFAULT_PASS", "s3cret")
            .env("RABBITMQ_DEFAULT_VHOST", "app")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let until_up = || async {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("not listening");
    };
    let mut child = start("admin");
    until_up().await;
    // Not loopback-only: only guest is, by default.
    login(port, "admin", "s3cret", "app")
        .await
        .expect("admin logs in to app");
    assert!(
        login(port, "guest", "guest", "/").await.is_err(),
        "no guest"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    // A second boot with other variables changes nothing: they seed a fresh directory only.
    let mut child = start("other");
    until_up().await;
    login(port, "admin", "s3cret", "app")
        .await
        .expect("admin still there");
    assert!(login(port, "other", "s3cret", "app").await.is_err());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

// warrenctl blocks this thread while the broker answers it on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warrenctl_speaks_rabbitmqctl_for_users_vhosts_and_permissions() {
    if external() {
        return;
    }
    let dir = temp_dir("ctl");
    let w = warren::start(config(&dir)).await.expect("start");
    let port = w.mgmt_addr().expect("mgmt").port().to_string();
    let ctl = |args: &[&str]| warrenctl(&port, args);
    for cmd in [
        &["add_vhost", "staging"][..],
        &["add_user", "deploy", "pw1"],
        &[
            "set_permissions",
            "-p",
            "staging",
            "deploy",
            "^deploy-",
            ".*",
            ".*",
        ],
        &["set_user_tags", "deploy", "monitoring"],
        &["change_password", "deploy", "pw2"],
        &["set_vhost_limits", "-p", "staging", r#"{"max-queues": 3}"#],
        &[
            "set_topic_permissions",
            "-p",
            "staging",
            "deploy",
            "amq.topic",
            "^a",
            "^b",
        ],
        &[
            "set_policy",
            "-p",
            "staging",
            "--priority",
            "3",
            "--apply-to",
            "queues",
            "ttl",
            "^q",
            r#"{"message-ttl": 1000}"#,
        ],
    ] {
        let (ok, out) = ctl(cmd);
        assert!(ok, "{cmd:?}: {out}");
    }
    let (ok, out) = ctl(&["add_user", "deploy", "again"]);
    assert!(!ok && out.contains("already exists"), "{out}");
    assert!(ctl(&["authenticate_user", "deploy", "pw2"]).0);
    assert!(
        !ctl(&["authenticate_user", "deploy", "pw1"]).0,
        "the old password no longer works"
    );
    let (_, out) = ctl(&["--format", "tsv", "list_users"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("deploy\t") && l.contains("monitoring")),
        "{out}"
    );
    let (_, out) = ctl(&["--format", "tsv", "list_permissions", "-p", "staging"]);
    assert!(out.contains("deploy\t^deploy-\t.*\t.*"), "{out}");
    let (_, out) = ctl(&["--format", "tsv", "list_user_permissions", "deploy"]);
    assert!(out.contains("staging\t^deploy-"), "{out}");
    let (_, out) = ctl(&["--format", "tsv", "list_topic_permissions", "-p", "staging"]);
    assert!(out.contains("deploy\tamq.topic\t^a\t^b"), "{out}");
    let (_, out) = ctl(&["--format", "tsv", "list_policies", "-p", "staging"]);
    assert!(
        out.contains("staging\tttl\t^q\tqueues") && out.contains("\t3"),
        "{out}"
    );
    assert!(ctl(&["clear_policy", "-p", "staging", "ttl"]).0);
    assert!(
        !ctl(&["clear_policy", "-p", "staging", "ttl"]).0,
        "already gone"
    );
    let c = login(w.local_addr().port(), "deploy", "pw2", "staging")
        .await
        .expect("deploy logs in");
    drop(c);
    assert!(ctl(&["clear_permissions", "-p", "staging", "deploy"]).0);
    assert!(login(w.local_addr().port(), "deploy", "pw2", "staging")
        .await
        .is_err());
    assert!(ctl(&["delete_user", "deploy"]).0);
    assert!(ctl(&["delete_vhost", "staging"]).0);
    let (_, out) = ctl(&["--format", "tsv", "list_vhosts"]);
    assert!(!out.contains("staging"), "{out}");
    w.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
