//! AMQPS and HTTPS with certificates made at run time (rcgen): a client without a certificate
//! logs in with PLAIN, one with a certificate signed by the configured CA logs in with SASL
//! EXTERNAL as the certificate's common name, TLS 1.2 and 1.3 both work, and with
//! fail_if_no_peer_cert a client without a certificate does not get in. Warren only.

use crate::common::*;
use amq_protocol::protocol::{connection as conn, AMQPClass};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{client::TlsStream, TlsConnector};

struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    client_cert: CertificateDer<'static>,
    client_key: Vec<u8>,
}

fn make_pki(client_cn: &str) -> Pki {
    let dir = crate::process::temp_dir("tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Warren test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, client_cn);
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
    std::fs::write(dir.join("client.pem"), client.pem()).expect("write");
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).expect("write");
    Pki {
        dir,
        ca: ca.der().clone(),
        client_cert: client.der().clone(),
        client_key: client_key.serialize_der(),
    }
}

fn files(pki: &Pki, verify_peer: bool, fail_if_no_peer_cert: bool) -> warren::tls::TlsFiles {
    warren::tls::TlsFiles {
        cert: pki.dir.join("server.pem"),
        key: pki.dir.join("server.key"),
        ca: Some(pki.dir.join("ca.pem")),
        verify_peer,
        fail_if_no_peer_cert,
    }
}

async fn broker(pki: &Pki, verify: bool, fail: bool) -> warren::BrokerHandle {
    warren::start(warren::Config {
        port: 0,
        tls_port: Some(0),
        mgmt_port: Some(0),
        mgmt_tls_port: Some(0),
        tls: Some(files(pki, verify, fail)),
        ..Default::default()
    })
    .await
    .expect("start with TLS")
}

/// A TLS client trusting the test CA; with the client certificate when `cert`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: bool,
    tls12_only: bool,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = if cert {
        let key = PrivateKeyDer::try_from(pki.client_key.clone()).expect("key");
        builder
            .with_client_auth_cert(vec![pki.client_cert.clone()], key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut s = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    // With TLS 1.3 a refused client certificate shows only at the first read.
    s.write_all(b"AMQP\x00\x00\x09\x01").await?;
    Ok(s)
}

/// After the protocol header: the mechanisms connection.start offers.
async fn mechanisms(raw: &mut Raw<TlsStream<tokio::net::TcpStream>>) -> String {
    match raw.recv_method().await {
        Some((0, AMQPClass::Connection(conn::AMQPMethod::Start(s)))) => s.mechanisms.to_string(),
        other => panic!("expected connection.start, got {other:?}"),
    }
}

/// start-ok with `mechanism`, tune-ok, open "/"; the answer to open.
async fn log_in(
    raw: &mut Raw<TlsStream<tokio::net::TcpStream>>,
    mechanism: &str,
    response: &[u8],
) -> Option<(u16, AMQPClass)> {
    raw.start_ok(mechanism, response).await;
    raw.recv_method().await?;
    raw.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::TuneOk(conn::TuneOk {
            channel_max: 16,
            frame_max: 131072,
            heartbeat: 0,
        })),
    )
    .await;
    raw.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::Open(conn::Open {
            virtual_host: "/".into(),
        })),
    )
    .await;
    raw.recv_method().await
}

fn is_open_ok(m: &Option<(u16, AMQPClass)>) -> bool {
    matches!(
        m,
        Some((0, AMQPClass::Connection(conn::AMQPMethod::OpenOk(_))))
    )
}

#[tokio::test]
async fn amqps_with_and_without_client_certificates() {
    if external() {
        return;
    }
    let pki = make_pki("tls-user");
    let w = broker(&pki, true, false).await;
    let tls = w.tls_addr().expect("AMQPS address");
    // No certificate: PLAIN over TLS, and no EXTERNAL on offer.
    for tls12 in [false, true] {
        let s = tls_connect(tls, &pki, false, tls12)
            .await
            .expect("TLS handshake");
        let mut raw = Raw::over(s);
        assert_eq!(mechanisms(&mut raw).await, "PLAIN AMQPLAIN");
        assert!(
            is_open_ok(&log_in(&mut raw, "PLAIN", b"\0guest\0guest").await),
            "tls12 only: {tls12}"
        );
    }
    // A certificate: EXTERNAL logs in as its common name once that user exists.
    let s = tls_connect(tls, &pki, true, false)
        .await
        .expect("TLS handshake");
    let mut raw = Raw::over(s);
    assert_eq!(mechanisms(&mut raw).await, "PLAIN AMQPLAIN EXTERNAL");
    raw.start_ok("EXTERNAL", b"").await;
    assert!(raw.closed_within(5).await, "no such user yet: refused");
    let mgmt = w.mgmt_addr().expect("mgmt").to_string();
    let put = |path: String, body| {
        let mgmt = mgmt.clone();
        async move {
            http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(body))
                .await
                .0
        }
    };
    assert_eq!(
        put(
            "/api/users/tls-user".into(),
            json!({"password_hash": "", "tags": ""})
        )
        .await,
        201
    );
    assert_eq!(
        put(
            "/api/permissions/%2F/tls-user".into(),
            json!({"configure": ".*", "write": ".*", "read": ".*"})
        )
        .await,
        201
    );
    let s = tls_connect(tls, &pki, true, false)
        .await
        .expect("TLS handshake");
    let mut raw = Raw::over(s);
    mechanisms(&mut raw).await;
    assert!(is_open_ok(&log_in(&mut raw, "EXTERNAL", b"").await));
    let (_, conns) = http_at(&mgmt, Some("guest:guest"), "GET", "/api/connections", None).await;
    assert!(
        conns
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["user"] == json!("tls-user"))),
        "{conns}"
    );
    // The management API over HTTPS.
    let mut s = tls_connect_http(w.mgmt_tls_addr().expect("https"), &pki).await;
    let auth = warren::mgmt::base64_encode(b"guest:guest");
    s.write_all(format!("GET /api/overview HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    w.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// A TLS connection to the HTTPS port (no AMQP header).
async fn tls_connect_http(
    addr: std::net::SocketAddr,
    pki: &Pki,
) -> TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("https handshake")
}

#[tokio::test]
async fn fail_if_no_peer_cert_keeps_certificateless_clients_out() {
    if external() {
        return;
    }
    let pki = make_pki("someone");
    let w = broker(&pki, true, true).await;
    let tls = w.tls_addr().expect("AMQPS address");
    let refused = match tls_connect(tls, &pki, false, false).await {
        Err(_) => true,
        Ok(s) => {
            let mut raw = Raw::over(s);
            raw.closed_within(5).await
        }
    };
    assert!(refused, "a client without a certificate gets nothing");
    let s = tls_connect(tls, &pki, true, false)
        .await
        .expect("with a certificate");
    let mut raw = Raw::over(s);
    mechanisms(&mut raw).await;
    assert!(is_open_ok(
        &log_in(&mut raw, "PLAIN", b"\0guest\0guest").await
    ));
    w.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[tokio::test]
async fn a_bad_key_file_is_a_clear_startup_error() {
    if external() {
        return;
    }
    let pki = make_pki("x");
    std::fs::write(pki.dir.join("server.key"), "not a key").expect("write");
    let e = match warren::start(warren::Config {
        port: 0,
        tls_port: Some(0),
        tls: Some(files(&pki, false, false)),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("started with a broken key"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("server.key"), "{e}");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[tokio::test]
async fn tls_handshakes_count_against_the_handshake_limit() {
    if external() {
        return;
    }
    let pki = make_pki("x");
    let w = warren::start(warren::Config {
        port: 0,
        tls_port: Some(0),
        tls: Some(files(&pki, false, false)),
        max_handshakes: 1,
        ..Default::default()
    })
    .await
    .expect("start");
    let tls = w.tls_addr().expect("AMQPS address");
    // One silent peer holds the only slot...
    let _silent = tokio::net::TcpStream::connect(tls).await.expect("connect");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // ...so the next is closed at once instead of waiting out a TLS handshake.
    let mut next = tokio::net::TcpStream::connect(tls).await.expect("connect");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), next.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    w.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Percent-encode a path for a URI's query.
fn enc(p: &std::path::Path) -> String {
    p.display()
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shovel_reaches_an_amqps_destination_with_the_uris_tls_options() {
    if external() {
        return;
    }
    let pki = make_pki("shovel");
    // The destination asks every client for a certificate.
    let dest = broker(&pki, true, true).await;
    let src = warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        in_memory: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let port = dest.tls_addr().expect("AMQPS address").port();
    let (ca, cert, key) = (
        enc(&pki.dir.join("ca.pem")),
        enc(&pki.dir.join("client.pem")),
        enc(&pki.dir.join("client.key")),
    );
    let uri = format!(
        "amqps://guest:guest@127.0.0.1:{port}/%2f?cacertfile={ca}&certfile={cert}&keyfile={key}&verify=verify_peer"
    );
    let mgmt = src.mgmt_addr().expect("mgmt").to_string();
    let shovel = |dest_uri: String, q: &str| {
        json!({"value": {"src-uri": "amqp://", "src-queue": q, "dest-uri": dest_uri,
                         "dest-queue": format!("{q}.in"), "reconnect-delay": 0.2}})
    };
    let (status, body) = http_at(
        &mgmt,
        Some("guest:guest"),
        "PUT",
        "/api/parameters/shovel/%2F/tls",
        Some(shovel(uri, "tls.out")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_c, ch) = channel_at(&src.url()).await;
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("tls.out".into(), durable, Default::default())
        .await
        .expect("declare");
    for i in 0..20 {
        ops::publish(&ch, "", "tls.out", format!("m{i}").as_bytes()).await;
    }
    let mut n = 0;
    for _ in 0..100 {
        // A channel each time: a passive declare of a queue not there yet closes it.
        let (_d, dch) = channel_at(&dest.url()).await;
        n = ops::passive(&dch, "tls.out.in")
            .await
            .map_or(0, |q| q.message_count());
        if n == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, all) = http_at(&mgmt, Some("guest:guest"), "GET", "/api/shovels", None).await;
    assert_eq!(n, 20, "moved over TLS with a client certificate: {all}");

    // Without the client certificate the destination refuses the handshake: the shovel says so.
    let bare = format!("amqps://guest:guest@127.0.0.1:{port}/%2f?cacertfile={ca}");
    let (status, _) = http_at(
        &mgmt,
        Some("guest:guest"),
        "PUT",
        "/api/parameters/shovel/%2F/bare",
        Some(shovel(bare, "bare.out")),
    )
    .await;
    assert_eq!(status, 201);
    let mut reason = String::new();
    for _ in 0..50 {
        let (_, all) = http_at(&mgmt, Some("guest:guest"), "GET", "/api/shovels", None).await;
        let s = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "bare")
            .cloned();
        reason = s
            .and_then(|s| s["reason"].as_str().map(String::from))
            .unwrap_or_default();
        if !reason.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !reason.is_empty(),
        "a failed handshake shows as the shovel's reason"
    );
    src.stop().await.expect("stop");
    dest.stop().await.expect("stop");
}
