//! The proxy against real sockets on 127.0.0.1: upstream servers the tests start, names mapped
//! to them by a static resolver. No other address is ever contacted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::network::resolver::StaticResolver;

const LOOP: &str = "127.0.0.1";

/// The tests' safety net, called before every upstream connect: even if a check under test
/// were broken, the proxy would panic rather than contact anything but loopback.
pub(super) fn only_loopback(ip: std::net::IpAddr) {
    let loopback = match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    };
    assert!(loopback, "a test proxy was about to contact {ip}");
}

fn config(domains: &[&str], pins: &[(&str, &str)], allow_private: bool) -> ProxyConfig {
    let table = pins
        .iter()
        .map(|(n, ip)| (n.to_string(), vec![ip.parse().unwrap()]));
    ProxyConfig {
        allowlist: Arc::new(Allowlist::parse(domains).unwrap()),
        allow_private,
        // No fallback: a name the test did not map can never reach real DNS.
        resolver: Arc::new(StaticResolver::new(table)),
        limits: ProxyLimits::default(),
    }
}

fn start(cfg: ProxyConfig) -> (Proxy, SocketAddr) {
    let l = std::net::TcpListener::bind((LOOP, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    (Proxy::start(l, cfg).unwrap(), addr)
}

/// An HTTP upstream: answers `200` with body `hello` after the request (and its framed body),
/// then reports every byte it received once the connection ends.
async fn http_upstream() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind((LOOP, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                let mut answered = false;
                loop {
                    let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => break,
                    };
                    got.extend_from_slice(&buf[..n]);
                    if !answered && request_complete(&got) {
                        answered = true;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                            .await;
                        let _ = s.shutdown().await;
                    }
                }
                let _ = tx.send(got);
            });
        }
    });
    (port, rx)
}

fn request_complete(b: &[u8]) -> bool {
    let text = String::from_utf8_lossy(b);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..end].to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return text.ends_with("0\r\n\r\n");
    }
    let cl = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    b.len() >= end + 4 + cl
}

/// A raw upstream: answers `pong` to its first bytes, reports every byte at the end.
async fn raw_upstream() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind((LOOP, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            if got.is_empty() {
                                let _ = s.write_all(b"pong").await;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        _ => break,
                    }
                }
                let _ = tx.send(got);
            });
        }
    });
    (port, rx)
}

/// Sends `req` and reads the answer to the end (5 s at most).
async fn exchange(proxy: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(req).await.unwrap();
    read_all(&mut s).await
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn hello(name: &str) -> Vec<u8> {
    crate::network::sni::tests::rustls_hello(name)
}

fn get(host: &str, port: u16) -> Vec<u8> {
    format!("GET http://{host}:{port}/x?q=1 HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Connection: keep-alive\r\nUser-Agent: t\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn plain_http_to_an_allowed_name_is_forwarded_without_hop_headers() {
    let (up, mut seen) = http_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    let answer = exchange(addr, &get("allowed.test", up)).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    let req = String::from_utf8(seen.recv().await.unwrap()).unwrap();
    assert!(req.starts_with("GET /x?q=1 HTTP/1.1\r\n"), "{req}");
    assert!(
        req.contains(&format!("Host: allowed.test:{up}\r\n")),
        "{req}"
    );
    assert!(req.contains("Connection: close\r\n"), "{req}");
    assert!(
        !req.to_ascii_lowercase().contains("proxy-connection"),
        "{req}"
    );
    let log = proxy.stop();
    assert_eq!(log.decisions.len(), 1, "{log:?}");
    let d = &log.decisions[0];
    assert!(d.allowed && d.host == "allowed.test" && d.reason == "matches allowed.test");
    assert_eq!(d.address.as_deref(), Some(&*format!("127.0.0.1:{up}")));
}

#[tokio::test]
async fn names_off_the_list_and_ip_literals_are_refused_with_the_reason() {
    let (up, mut seen) = http_upstream().await;
    let (proxy, addr) = start(config(
        &["allowed.test"],
        &[("allowed.test", LOOP), ("evil.test", LOOP)],
        true,
    ));
    let a = exchange(addr, &get("evil.test", up)).await;
    assert!(
        a.starts_with("HTTP/1.1 403 Forbidden by airlock: evil.test is not on the allowlist"),
        "{a}"
    );
    assert!(a.contains("add --allow-domain evil.test"), "{a}");
    let a = exchange(
        addr,
        format!("CONNECT evil.test:{up} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 403"), "{a}");
    for target in [
        format!("CONNECT 127.0.0.1:{up} HTTP/1.1\r\n\r\n"),
        format!("CONNECT [::1]:{up} HTTP/1.1\r\n\r\n"),
        format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n"),
        format!("CONNECT 2130706433:{up} HTTP/1.1\r\n\r\n"),
    ] {
        let a = exchange(addr, target.as_bytes()).await;
        assert!(a.starts_with("HTTP/1.1 403"), "{target}: {a}");
        assert!(a.contains("is an IP address"), "{target}: {a}");
    }
    let log = proxy.stop();
    assert!(log.decisions.iter().all(|d| !d.allowed), "{log:?}");
    assert_eq!(log.decisions.len(), 6);
    assert!(seen.try_recv().is_err(), "the upstream was contacted");
}

#[tokio::test]
async fn host_header_must_agree_with_the_url() {
    let (up, mut seen) = http_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    for req in [
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: evil.test:{up}\r\n\r\n"),
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:1\r\n\r\n"),
        format!(
            "GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nHost: evil.test\r\n\r\n"
        ),
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://allowed.test:{up}@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n"),
        format!("GET https://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n"),
    ] {
        let a = exchange(addr, req.as_bytes()).await;
        assert!(
            a.starts_with("HTTP/1.1 403") || a.starts_with("HTTP/1.1 400"),
            "{req}: {a}"
        );
    }
    let a = exchange(
        addr,
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: evil.test:{up}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(a.contains("does not match"), "{a}");
    drop(proxy);
    assert!(seen.try_recv().is_err(), "the upstream was contacted");
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused() {
    let (up, mut seen) = http_upstream().await;
    let pins = [
        ("allowed.test", LOOP),
        ("meta.test", "169.254.169.254"),
        ("mapped.test", "::ffff:127.0.0.1"),
    ];
    let domains = ["allowed.test", "meta.test", "mapped.test"];
    // Without the opt-in, a name that leads to loopback is refused, and said so.
    let (proxy, addr) = start(config(&domains, &pins, false));
    let a = exchange(addr, &get("allowed.test", up)).await;
    assert!(a.starts_with("HTTP/1.1 403"), "{a}");
    assert!(
        a.contains("resolves to 127.0.0.1, a loopback address"),
        "{a}"
    );
    assert!(a.contains("--allow-private-addresses"), "{a}");
    let a = exchange(addr, &get("mapped.test", up)).await;
    assert!(a.contains("loopback address"), "{a}");
    drop(proxy);
    // With it, loopback passes but cloud metadata never does.
    let (proxy, addr) = start(config(&domains, &pins, true));
    let a = exchange(addr, &get("meta.test", 80)).await;
    assert!(a.starts_with("HTTP/1.1 403"), "{a}");
    assert!(a.contains("cloud metadata address: always refused"), "{a}");
    let a = exchange(addr, &get("allowed.test", up)).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    drop(proxy);
    assert!(seen.recv().await.is_some());
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn connect_needs_a_client_hello_naming_the_same_host() {
    let (up, mut seen) = raw_upstream().await;
    let (proxy, addr) = start(config(
        &["allowed.test", "*.other.test"],
        &[("allowed.test", LOOP), ("x.other.test", LOOP)],
        true,
    ));
    // Matching SNI: the tunnel carries the ClientHello and the answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("CONNECT Allowed.Test:{up} HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 39];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[..], b"HTTP/1.1 200 Connection established\r\n\r\n");
    let h = hello("allowed.test");
    s.write_all(&h).await.unwrap();
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"pong");
    drop(s);
    assert_eq!(seen.recv().await.unwrap(), h);

    // A different SNI (allowed or not), no SNI, or not TLS at all: closed with an alert,
    // nothing forwarded.
    for first in [
        hello("x.other.test"),
        hello("evil.test"),
        hello("127.0.0.1"),
        b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("CONNECT allowed.test:{up} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s.read_exact(&mut head).await.unwrap();
        s.write_all(&first).await.unwrap();
        let rest = read_all(&mut s).await;
        assert_eq!(rest.as_bytes(), &TLS_ACCESS_DENIED[..]);
        assert_eq!(
            seen.recv().await.unwrap(),
            b"",
            "bytes reached the upstream"
        );
    }
    let log = proxy.stop();
    let blocked: Vec<_> = log.blocked().collect();
    assert_eq!(blocked.len(), 4, "{log:?}");
    assert!(
        blocked[0]
            .reason
            .contains("\"x.other.test\" does not match the CONNECT host allowed.test")
    );
    assert!(
        blocked[3]
            .reason
            .contains("did not start with a TLS handshake")
    );
}

#[tokio::test]
async fn request_bodies_are_framed_and_nothing_else_rides_along() {
    let (up, mut seen) = http_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    let smuggled = "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n";
    let req = format!(
        "POST http://allowed.test:{up}/p HTTP/1.1\r\nHost: allowed.test:{up}\r\nContent-Length: 5\r\n\r\nabcde{smuggled}"
    );
    let a = exchange(addr, req.as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let got = String::from_utf8(seen.recv().await.unwrap()).unwrap();
    assert!(got.ends_with("\r\n\r\nabcde"), "{got}");
    assert!(!got.contains("evil"), "{got}");

    let req = format!(
        "POST http://allowed.test:{up}/c HTTP/1.1\r\nHost: allowed.test:{up}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n{smuggled}"
    );
    let a = exchange(addr, req.as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let got = String::from_utf8(seen.recv().await.unwrap()).unwrap();
    assert!(
        got.ends_with("\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"),
        "{got}"
    );
    assert!(!got.contains("evil"), "{got}");

    for bad in [
        format!(
            "POST http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        format!(
            "POST http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
        ),
        format!(
            "POST http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nContent-Length: -1\r\n\r\n"
        ),
        format!(
            "POST http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nTransfer-Encoding: gzip\r\n\r\n"
        ),
    ] {
        let a = exchange(addr, bad.as_bytes()).await;
        assert!(
            a.starts_with("HTTP/1.1 400") || a.starts_with("HTTP/1.1 501"),
            "{bad}: {a}"
        );
    }
    drop(proxy);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_errors_and_the_proxy_carries_on() {
    let (up, _seen) = http_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    let huge = format!(
        "GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\nX: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let many =
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\n{many}\r\n");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\x01\x02\xff\r\n\r\n".to_vec(), "400"),
        (b"GET\r\n\r\n".to_vec(), "400"),
        (b"CONNECT allowed.test HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            b"CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n".to_vec(),
            "400",
        ),
        (b"CONNECT allowed.test:0 HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (b"CONNECT :443 HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            b"GET http://a..b/ HTTP/1.1\r\nHost: a..b\r\n\r\n".to_vec(),
            "400",
        ),
        (b"GET http:// HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (huge.into_bytes(), "431"),
        (many.into_bytes(), "431"),
    ];
    for (req, status) in cases {
        let a = exchange(addr, &req).await;
        assert!(
            a.starts_with(&format!("HTTP/1.1 {status}")),
            "{:?}: {a}",
            String::from_utf8_lossy(&req[..req.len().min(80)])
        );
    }
    // Closing mid-head, or without a byte, is no trouble either.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET http://allowed").await.unwrap();
    drop(s);
    drop(TcpStream::connect(addr).await.unwrap());
    let a = exchange(addr, &get("allowed.test", up)).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    drop(proxy);
}

#[tokio::test]
async fn slowloris_is_cut_at_the_head_deadline_while_others_are_served() {
    let (up, _seen) = http_upstream().await;
    let mut cfg = config(&["allowed.test"], &[("allowed.test", LOOP)], true);
    cfg.limits.head_timeout = Duration::from_millis(400);
    cfg.limits.hello_timeout = Duration::from_millis(400);
    let (proxy, addr) = start(cfg);
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET http://allowed.test/ HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(s);
    }
    // A tunnel that never sends its ClientHello is cut as well.
    let mut mute = TcpStream::connect(addr).await.unwrap();
    mute.write_all(format!("CONNECT allowed.test:{up} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for s in slow.iter_mut() {
        let _ = s.write_all(b"s").await;
    }
    let a = exchange(addr, &get("allowed.test", up)).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    for mut s in slow {
        let a = read_all(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
    }
    let rest = read_all(&mut mute).await;
    assert!(
        rest.ends_with(std::str::from_utf8(&[21, 3, 3, 0, 2, 2, 49]).unwrap()),
        "{rest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_connections_are_all_served() {
    let (up, _seen) = http_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        tasks.push(tokio::spawn(async move {
            exchange(addr, &get("allowed.test", up)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().starts_with("HTTP/1.1 200") {
            ok += 1;
        }
    }
    assert_eq!(ok, 500);
    let log = proxy.stop();
    assert_eq!(log.decisions.len(), 500);
}

#[tokio::test]
async fn stopping_closes_every_tunnel() {
    let (up, mut seen) = raw_upstream().await;
    let (proxy, addr) = start(config(&["allowed.test"], &[("allowed.test", LOOP)], true));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("CONNECT allowed.test:{up} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    s.read_exact(&mut head).await.unwrap();
    s.write_all(&hello("allowed.test")).await.unwrap();
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).await.unwrap();
    // The tunnel is open and idle; stopping the proxy ends both of its sides at once.
    let stopped = std::time::Instant::now();
    let log = proxy.stop();
    assert_eq!(log.decisions.len(), 1);
    let upstream_saw = tokio::time::timeout(Duration::from_secs(2), seen.recv()).await;
    assert!(upstream_saw.is_ok(), "the upstream side stayed open");
    assert_eq!(read_all(&mut s).await, "");
    assert!(stopped.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test]
async fn the_log_is_bounded() {
    let mut cfg = config(&["allowed.test"], &[], true);
    cfg.limits.max_log_entries = 3;
    let (proxy, addr) = start(cfg);
    for _ in 0..5 {
        exchange(addr, b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n").await;
    }
    let log = proxy.stop();
    assert_eq!((log.decisions.len(), log.dropped), (3, 2));
}
