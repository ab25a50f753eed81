//! Network policy from inside real sandboxes (DESIGN §6): `allowlist` reaches the allowed
//! names through airlock's proxy and nothing else; `none` reaches nothing.
//!
//! Every server here is one the test starts on 127.0.0.1. Test names (`allowed.test`,
//! `evil.test`, ...) are pinned to it with `--resolve`, and since the servers live on the
//! host's loopback the runs that must reach them pass `--allow-private-addresses`. No other
//! address is ever contacted: names that are refused are refused before any resolution, and
//! every name the proxy may resolve is pinned.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// A server on 127.0.0.1 that counts its connections and answers each request with
/// `hello from <name> (Host: <header>)`; with `tls`, over TLS with the test CA's certificate.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    /// Connections whose peer has closed (the server saw EOF or an error).
    closed: Arc<AtomicUsize>,
}

impl Server {
    fn http(name: &'static str) -> Server {
        Server::start(name, None)
    }

    fn https(name: &'static str, tls: &Tls) -> Server {
        Server::start(name, Some(tls.server.clone()))
    }

    fn start(name: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (c, d) = (Arc::clone(&connections), Arc::clone(&closed));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                let d = Arc::clone(&d);
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    match tls {
                        None => serve(name, stream, &d),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            serve(name, rustls::StreamOwned::new(conn, stream), &d)
                        }
                    }
                });
            }
        });
        Server {
            port,
            connections,
            closed,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Answers one request, then closes when asked to (`Connection: close`), else holds the
/// connection until the peer closes it.
fn serve(name: &str, stream: impl Read + Write, closed: &AtomicUsize) {
    let mut r = BufReader::new(stream);
    let mut host = String::new();
    let mut close = false;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(_) => {}
        }
        let lower = line.to_ascii_lowercase();
        if let Some(h) = lower.strip_prefix("host: ") {
            host = h.trim().to_string();
        }
        // As HTTP/1.1 requires, `Connection: close` is honoured by closing after the answer.
        close |= lower.starts_with("connection:") && lower.contains("close");
        if line == "\r\n" {
            break;
        }
    }
    let body = format!("hello from {name} (Host: {host})");
    let s = r.get_mut();
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(answer.as_bytes());
    let _ = s.flush();
    if !close {
        // Held open until the peer goes: lets a test see who closes a connection, and when.
        let mut rest = [0u8; 512];
        while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
    }
    closed.fetch_add(1, Ordering::SeqCst);
}

/// A test CA and a server certificate for `allowed.test` signed by it, made per test; the CA
/// is written to a directory every sandbox user can read, removed with the value.
struct Tls {
    server: Arc<rustls::ServerConfig>,
    ca_dir: HostDir,
}

impl Tls {
    fn new(tag: &str) -> Tls {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "airlock test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["allowed.test".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        let ca_dir = HostDir::new(&format!("ca-{tag}"));
        let pem = ca_dir.write("ca.pem", &ca.pem());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pem, std::fs::Permissions::from_mode(0o644)).unwrap();
        Tls {
            server: Arc::new(server),
            ca_dir,
        }
    }

    /// Trusts the CA inside the sandbox: mounted at /testca, named by SSL_CERT_FILE (Python,
    /// OpenSSL) and NODE_EXTRA_CA_CERTS (Node).
    fn trust(&self) -> Vec<String> {
        vec![
            "--mount".into(),
            format!("{}:/testca:ro", self.ca_dir.path().display()),
            "--env".into(),
            "SSL_CERT_FILE=/testca/ca.pem".into(),
            "--env".into(),
            "NODE_EXTRA_CA_CERTS=/testca/ca.pem".into(),
        ]
    }
}

/// `--allow-domain` for each name (pinned to 127.0.0.1), private addresses allowed (the test
/// servers live on the host's loopback).
fn allow(names: &[&str]) -> Vec<String> {
    let mut a = vec!["--allow-private-addresses".to_string()];
    a.extend(pins(names));
    for n in names {
        a.extend(["--allow-domain".into(), n.to_string()]);
    }
    a
}

fn pins(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["--resolve".to_string(), format!("{n}=127.0.0.1")])
        .collect()
}

/// A name for a test's temporary files, distinct per test and identity.
fn tag(who: &Who, line: u32) -> String {
    format!("{}-{line}", if who.is_root() { "root" } else { "user" })
}

fn py_args(who: &Who, args: &[String], code: &str) -> serde_json::Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    py_with(who, &args, code)
}

both!(allowed_http_and_https_succeed_through_the_proxy, |who| {
    let plain = Server::http("plain");
    let tls = Tls::new(&tag(who, line!()));
    let secure = Server::https("secure", &tls);
    let code = format!(
        r#"
import os, ssl, urllib.request
print("proxy", os.environ["HTTPS_PROXY"], os.environ["no_proxy"])
print(urllib.request.urlopen("http://allowed.test:{p}/a", timeout=10).read().decode())
print(urllib.request.urlopen("https://allowed.test:{s}/b", timeout=10).read().decode())
"#,
        p = plain.port,
        s = secure.port
    );
    let mut args = allow(&["allowed.test"]);
    args.extend(tls.trust());
    let out = ok_stdout(&py_args(who, &args, &code));
    assert!(
        out.contains("proxy http://127.0.0.1:3128 localhost,127.0.0.1,::1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "hello from plain (Host: allowed.test:{})",
            plain.port
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "hello from secure (Host: allowed.test:{})",
            secure.port
        )),
        "{out}"
    );
});

both!(
    node_reaches_an_allowed_https_server_through_the_proxy,
    |who| {
        let tls = Tls::new(&tag(who, line!()));
        let secure = Server::https("secure", &tls);
        // Node 20 ignores HTTPS_PROXY: the program opens the CONNECT tunnel itself, as an agent
        // library would, and verifies the server against NODE_EXTRA_CA_CERTS.
        let code = format!(
            r#"
const http = require('http'), tls = require('tls');
const [host, port] = new URL(process.env.HTTPS_PROXY).host.split(':');
console.log('npm proxy', process.env.npm_config_https_proxy);
http.request({{host, port, method: 'CONNECT', path: 'allowed.test:{s}'}}).on('connect', (res, sock) => {{
  console.log('tunnel', res.statusCode);
  const t = tls.connect({{socket: sock, servername: 'allowed.test'}}, () => {{
    t.write('GET / HTTP/1.1\r\nHost: allowed.test:{s}\r\nConnection: close\r\n\r\n');
  }});
  let body = '';
  t.on('data', d => body += d);
  t.on('end', () => console.log(body.split('\r\n\r\n')[1]));
  t.on('error', e => {{ console.log('tls error', e.message); process.exit(1); }});
}}).on('error', e => {{ console.log('proxy error', e.message); process.exit(1); }}).end();
"#,
            s = secure.port
        );
        let mut args: Vec<String> = allow(&["allowed.test"]);
        args.extend(tls.trust());
        args.extend(["--lang".into(), "javascript".into(), "-c".into(), code]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (v, _) = run_json(who, &args);
        let out = ok_stdout(&v);
        assert!(out.contains("npm proxy http://127.0.0.1:3128"), "{out}");
        assert!(out.contains("tunnel 200"), "{out}");
        assert!(
            out.contains(&format!(
                "hello from secure (Host: allowed.test:{})",
                secure.port
            )),
            "{out}"
        );
    }
);

both!(
    names_off_the_list_are_refused_with_the_reason_and_the_hint,
    |who| {
        let plain = Server::http("plain");
        let tls = Tls::new(&tag(who, line!()));
        let secure = Server::https("secure", &tls);
        // evil.test is pinned to the same servers: only the rule stops it.
        let mut args = allow(&["allowed.test"]);
        args.extend(pins(&["evil.test"]));
        args.extend(tls.trust());
        let code = format!(
            r#"
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://evil.test:{p}/", timeout=10); print("REACHED http")
except urllib.error.HTTPError as e:
    print("http", e.code, e.reason, "|", e.read().decode().strip())
try:
    urllib.request.urlopen("https://evil.test:{s}/", timeout=10); print("REACHED https")
except OSError as e:
    print("https", e)
urllib.request.urlopen("https://evil.test:{s}/", timeout=10)
"#,
            p = plain.port,
            s = secure.port
        );
        let v = py_args(who, &args, &code);
        let out = stdout(&v);
        assert!(!out.contains("REACHED"), "{out}");
        assert!(
        out.contains("http 403 Forbidden by airlock: evil.test is not on the allowlist | airlock proxy: evil.test is not on the allowlist; to allow it: add --allow-domain evil.test"),
        "{out}"
    );
        assert!(
        out.contains("https <urlopen error Tunnel connection failed: 403 Forbidden by airlock: evil.test is not on the allowlist>"),
        "{out}"
    );
        // The uncaught refusal ends the run; the hint names the host and the fix.
        assert_eq!(v["status"], "error", "{v}");
        let hint = v["error"]["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("refused CONNECT evil.test:"), "{hint}");
        assert!(hint.contains("add --allow-domain evil.test"), "{hint}");
        assert_eq!(plain.connections() + secure.connections(), 0);
    }
);

both!(ip_literals_are_refused, |who| {
    let plain = Server::http("plain");
    let code = format!(
        r#"
import http.client
for target in ["http://127.0.0.1:{p}/", "http://[::1]:{p}/", "http://2130706433:{p}/"]:
    c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
    c.request("GET", target, headers={{"Host": target.split("/")[2]}})
    r = c.getresponse(); print(r.status, r.reason)
c = http.client.HTTPSConnection("127.0.0.1", 3128, timeout=10)
c.set_tunnel("127.0.0.1", {p})
try:
    c.request("GET", "/"); print("REACHED")
except OSError as e:
    print("tunnel", e)
"#,
        p = plain.port
    );
    let out = ok_stdout(&py_args(who, &allow(&["allowed.test"]), &code));
    assert_eq!(out.matches("403 Forbidden by airlock:").count(), 4, "{out}");
    assert!(
        out.contains("127.0.0.1 is an IP address; only names on the allowlist are reachable"),
        "{out}"
    );
    assert!(
        out.contains("tunnel Tunnel connection failed: 403"),
        "{out}"
    );
    assert!(!out.contains("REACHED"), "{out}");
    assert_eq!(plain.connections(), 0);
});

both!(
    connect_to_an_allowed_name_with_a_different_sni_is_refused,
    |who| {
        let tls = Tls::new(&tag(who, line!()));
        let secure = Server::https("secure", &tls);
        let mut args = allow(&["allowed.test", "other.test"]);
        args.extend(pins(&["evil.test"]));
        args.extend(tls.trust());
        let code = format!(
            r#"
import socket, ssl
def tunnel(sni):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT allowed.test:{s} HTTP/1.1\r\nHost: allowed.test:{s}\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        got = b""
        while b"hello" not in got:
            got += t.recv(4096)
        print(sni, head.split(b"\r\n")[0].decode(), "REACHED", got.decode().split("\r\n\r\n")[1])
    except (ssl.SSLError, OSError) as e:
        print(sni, head.split(b"\r\n")[0].decode(), "refused", e)
for sni in ["allowed.test", "other.test", "evil.test"]:
    tunnel(sni)
"#,
            s = secure.port
        );
        let out = ok_stdout(&py_args(who, &args, &code));
        assert!(
            out.contains(
                "allowed.test HTTP/1.1 200 Connection established REACHED hello from secure"
            ),
            "{out}"
        );
        for sni in ["other.test", "evil.test"] {
            assert!(
                out.contains(&format!(
                    "{sni} HTTP/1.1 200 Connection established refused"
                )) && !out.contains(&format!(
                    "{sni} HTTP/1.1 200 Connection established REACHED"
                )),
                "{out}"
            );
        }
        assert!(out.contains("ACCESS_DENIED"), "{out}");
    }
);

both!(plain_http_with_a_different_host_header_is_refused, |who| {
    let plain = Server::http("plain");
    let code = format!(
        r#"
import http.client, socket
# Absolute form: the URL names an allowed host, the Host header another.
c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
c.request("GET", "http://allowed.test:{p}/", headers={{"Host": "evil.test"}})
r = c.getresponse(); print("absolute", r.status, r.reason)
# A CONNECT tunnel to an allowed target, then plain HTTP for another host inside it.
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT allowed.test:{p} HTTP/1.1\r\n\r\n")
print("tunnel", s.recv(64).split(b"\r\n")[0].decode())
s.sendall(b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
rest = s.recv(4096)
print("inside", rest)
"#,
        p = plain.port
    );
    let mut args = allow(&["allowed.test"]);
    args.extend(pins(&["evil.test"]));
    let out = ok_stdout(&py_args(who, &args, &code));
    assert!(
        out.contains("absolute 403 Forbidden by airlock: the Host header evil.test:80 does not match the request's host allowed.test"),
        "{out}"
    );
    assert!(
        out.contains("tunnel HTTP/1.1 200 Connection established"),
        "{out}"
    );
    // The plain request inside the tunnel is answered with a TLS access_denied alert only.
    assert!(
        out.contains(r"inside b'\x15\x03\x03\x00\x02\x021'"),
        "{out}"
    );
    // The tunnel's upstream connection was opened, but no request reached the server.
    std::thread::sleep(Duration::from_millis(200));
    assert!(plain.connections() <= 1);
    assert_eq!(plain.closed.load(Ordering::SeqCst), plain.connections());
});

both!(private_addresses_are_refused_unless_allowed, |who| {
    // Only loopback is ever pinned here: the metadata and other private classes are refused
    // by the same check, and are covered by the proxy's unit tests, whose upstream connects
    // are fenced to loopback (so a broken check could not reach a real metadata service).
    let plain = Server::http("plain");
    let code = format!(
        r#"
import urllib.request, urllib.error
for url in ["http://allowed.test:{p}/", "http://six.test:{p}/"]:
    try:
        print("REACHED", urllib.request.urlopen(url, timeout=10).read().decode())
    except urllib.error.HTTPError as e:
        print(e.code, e.reason)
"#,
        p = plain.port
    );
    // Without the opt-in: a name leading to loopback is refused and says how to allow it.
    let mut strict: Vec<String> = pins(&["allowed.test"]);
    strict.extend(["--resolve".into(), "six.test=::ffff:127.0.0.1".into()]);
    for n in ["allowed.test", "six.test"] {
        strict.extend(["--allow-domain".into(), n.into()]);
    }
    let v = py_args(who, &strict, &code);
    let out = ok_stdout(&v);
    assert!(!out.contains("REACHED"), "{out}");
    assert!(out.contains("403 Forbidden by airlock: allowed.test resolves to 127.0.0.1, a loopback address: refused"), "{out}");
    assert!(out.contains("403 Forbidden by airlock: six.test resolves to ::ffff:127.0.0.1, a loopback address: refused"), "{out}");
    assert_eq!(plain.connections(), 0);
    // The hint of a run that fails on it names the opt-in.
    let v = py_args(
        who,
        &strict,
        &format!(
            "import urllib.request; urllib.request.urlopen('http://allowed.test:{}/')",
            plain.port
        ),
    );
    let hint = v["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("--allow-private-addresses"), "{v}");
    // With it, both are reached.
    let mut lax = strict.clone();
    lax.push("--allow-private-addresses".into());
    let out = ok_stdout(&py_args(who, &lax, &code));
    assert!(
        out.contains("REACHED hello from plain (Host: allowed.test:"),
        "{out}"
    );
    assert!(
        out.contains("REACHED hello from plain (Host: six.test:"),
        "{out}"
    );
    assert_eq!(plain.connections(), 2);
});

both!(raw_tcp_udp_and_dns_that_ignore_the_proxy_fail, |who| {
    let plain = Server::http("plain");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
try:
    socket.create_connection(("127.0.0.1", {p}), timeout=3); print("TCP CONNECTED")
except OSError as e:
    print("tcp failed", type(e).__name__)
try:
    socket.create_connection(("allowed.test", {p}), timeout=3); print("NAME CONNECTED")
except OSError as e:
    print("name failed", type(e).__name__)
try:
    print("RESOLVED", socket.getaddrinfo("allowed.test", 80))
except OSError as e:
    print("dns failed", type(e).__name__)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
u.sendto(b"x", ("127.0.0.1", {u}))
# A raw DNS query to the loopback resolvers: nothing answers inside the sandbox.
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07allowed\x04test\x00\x00\x01\x00\x01"
for server in ["127.0.0.1", "127.0.0.53"]:
    try:
        u.sendto(q, (server, 53)); u.recvfrom(512); print("DNS ANSWERED", server)
    except OSError as e:
        print("dns query failed", server, type(e).__name__)
"#,
        p = plain.port,
        u = udp_port
    );
    let out = ok_stdout(&py_args(who, &allow(&["allowed.test"]), &code));
    for bad in ["CONNECTED", "RESOLVED", "ANSWERED"] {
        assert!(!out.contains(bad), "{out}");
    }
    assert!(
        out.contains("tcp failed") && out.contains("dns failed"),
        "{out}"
    );
    assert_eq!(plain.connections(), 0);
    let mut buf = [0u8; 16];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "the host's UDP socket got a datagram"
    );

    // A program that trips over the missing DNS is told why.
    let v = py_args(
        who,
        &allow(&["allowed.test"]),
        "import socket; socket.getaddrinfo('allowed.test', 443)",
    );
    let hint = v["error"]["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("no DNS") && hint.contains("127.0.0.1:3128"),
        "{v}"
    );
});

both!(
    netlink_packet_vsock_and_io_uring_cannot_route_around_the_proxy,
    |who| {
        let code = r#"
import ctypes, os, socket
for name, fam, typ in [("AF_NETLINK", 16, socket.SOCK_RAW), ("AF_PACKET", 17, socket.SOCK_RAW),
                       ("AF_PACKET dgram", 17, socket.SOCK_DGRAM), ("AF_VSOCK", 40, socket.SOCK_STREAM),
                       ("AF_VSOCK dgram", 40, socket.SOCK_DGRAM)]:
    try:
        socket.socket(fam, typ); print(name, "ALLOWED")
    except OSError as e:
        print(name, "refused", e.errno)
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
r = libc.syscall(425, 8, params)  # io_uring_setup
print("io_uring_setup", r, ctypes.get_errno())
print("interfaces", sorted(os.listdir("/proc/sys/net/ipv4/conf")))
"#;
        let out = ok_stdout(&py_args(who, &allow(&["allowed.test"]), code));
        assert!(!out.contains("ALLOWED"), "{out}");
        assert!(out.contains("io_uring_setup -1 1"), "{out}");
        // Only the sandbox's own loopback exists: nothing to route through.
        assert!(out.contains("interfaces ['all', 'default', 'lo']"), "{out}");
    }
);

both!(
    the_proxy_survives_malformed_slowloris_and_500_connections,
    |who| {
        let plain = Server::http("plain");
        let code = format!(
            r#"
import selectors, socket, time
P = ("127.0.0.1", 3128)
def ask(data):
    s = socket.create_connection(P, timeout=10); s.sendall(data)
    out = b""
    while True:
        b = s.recv(65536)
        if not b: return out
        out += b
for junk in [b"\x00\xff\xfe garbage\r\n\r\n", b"GET\r\n\r\n", b"CONNECT x HTTP/1.1\r\n\r\n",
             b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX: " + b"a" * 40000 + b"\r\n\r\n"]:
    print("junk", ask(junk).split(b"\r\n")[0].decode())
# Slowloris: partial heads that never end, held open meanwhile.
slow = []
for _ in range(50):
    s = socket.create_connection(P); s.sendall(b"GET http://allowed.test/ HTTP/1.1\r\nHost: allo"); slow.append(s)
# 500 connections at once.
req = b"GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n"
sel = selectors.DefaultSelector()
conns = []
for _ in range(500):
    s = socket.create_connection(P); s.sendall(req); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, [])
    conns.append(s)
done, ok, deadline = 0, 0, time.time() + 60
while done < 500 and time.time() < deadline:
    for key, _ in sel.select(timeout=1):
        b = key.fileobj.recv(65536)
        if b:
            key.data.append(b)
        else:
            sel.unregister(key.fileobj); done += 1
            if b"".join(key.data).startswith(b"HTTP/1.1 200"): ok += 1
print("concurrent", done, ok)
print("after", ask(req).split(b"\r\n")[0].decode())
"#,
            p = plain.port
        );
        let mut args = allow(&["allowed.test"]);
        args.extend(["--timeout".into(), "90".into()]);
        let out = ok_stdout(&py_args(who, &args, &code));
        assert!(out.contains("junk HTTP/1.1 400 Bad Request"), "{out}");
        assert_eq!(out.matches("junk HTTP/1.1 400").count(), 3, "{out}");
        assert!(out.contains("junk HTTP/1.1 431"), "{out}");
        assert!(out.contains("concurrent 500 500"), "{out}");
        assert!(out.contains("after HTTP/1.1 200 OK"), "{out}");
        assert_eq!(plain.connections(), 501);
    }
);

both!(the_proxy_stops_when_the_run_ends, |who| {
    let tls = Tls::new(&tag(who, line!()));
    let secure = Server::https("secure", &tls);
    // The program holds a TLS connection through the proxy and never closes it; the run's
    // timeout ends it, and with it the proxy and the upstream connection.
    let code = format!(
        r#"
import socket, ssl, time
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT allowed.test:{s} HTTP/1.1\r\n\r\n")
s.recv(64)
t = ssl.create_default_context().wrap_socket(s, server_hostname="allowed.test")
t.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
got = b""
while b"hello" not in got:
    got += t.recv(4096)
print(got.decode().split("\r\n\r\n")[1], flush=True)
time.sleep(600)
"#,
        s = secure.port
    );
    let mut args = allow(&["allowed.test"]);
    args.extend(tls.trust());
    args.extend(["--timeout".into(), "3".into()]);
    let started = Instant::now();
    let v = py_args(who, &args, &code);
    assert_eq!(v["status"], "timeout", "{v}");
    assert!(stdout(&v).contains("hello from secure"), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run outlived its timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while secure.closed.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(secure.connections(), 1);
    assert_eq!(
        secure.closed.load(Ordering::SeqCst),
        1,
        "the upstream connection stayed open"
    );
});

both!(an_empty_allowlist_is_no_network, |who| {
    let plain = Server::http("plain");
    let code = format!(
        r#"
import os, socket
print("proxy var", os.environ.get("HTTP_PROXY"))
for port in [3128, {p}]:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2); print("CONNECTED", port)
    except OSError as e:
        print("refused", port, type(e).__name__)
"#,
        p = plain.port
    );
    let out = ok_stdout(&py_with(who, &["--network", "allowlist"], &code));
    assert!(out.contains("proxy var None"), "{out}");
    assert!(!out.contains("CONNECTED"), "{out}");
    assert_eq!(plain.connections(), 0);
});

both!(bad_network_flags_name_the_field, |who| {
    for (args, field) in [
        (
            vec!["--network", "none", "--allow-domain", "a.test"],
            "allowed_domains",
        ),
        (
            vec!["--network", "host", "--allow-domain", "a.test"],
            "allowed_domains",
        ),
        (vec!["--allow-domain", "*foo.test"], "allowed_domains"),
        (vec!["--allow-domain", "a..test"], "allowed_domains"),
        (vec!["--allow-domain", "10.0.0.1"], "allowed_domains"),
        (vec!["--allow-private-addresses"], "allow_private"),
        (
            vec!["--allow-domain", "a.test", "--resolve", "a.test=nope"],
            "resolve",
        ),
        (vec!["--network", "bogus"], "network"),
    ] {
        let mut all = args.clone();
        all.extend(["-c", "pass"]);
        let (v, code) = run_json(who, &all);
        assert_eq!(code, 125, "{args:?}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("invalid `{field}`")),
            "{args:?}: {msg}"
        );
    }
});
