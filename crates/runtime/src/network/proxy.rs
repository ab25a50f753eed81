//! The host-side proxy of network `allowlist`: the sandbox's only way out.
//!
//! The sandbox lives in an empty network namespace. The jail creates a TCP listener on the
//! sandbox's own 127.0.0.1 and hands its descriptor to the supervisor, which serves it here:
//! connections the sandbox makes to that port arrive in this (host-side) process, which decides
//! and, when allowed, connects out from the host's network namespace. Nothing else of the
//! sandbox's traffic has anywhere to go.
//!
//! Per connection, exactly one request is judged:
//! - `CONNECT host:port`: the host must match a rule; it is resolved here and every address
//!   checked (see [`classify`]); after `200` the client's first bytes must be a TLS ClientHello
//!   whose SNI names the same host, or the tunnel is closed with a TLS `access_denied` alert.
//! - plain HTTP in absolute form (`GET http://host/path`): the URL's host must match a rule and
//!   agree with the `Host` header; the request is forwarded with `Connection: close`, its body
//!   framed exactly (so no second, unchecked request rides along), and the response relayed.
//!
//! A refusal answers `403` whose reason phrase and body name the rule (`http.client` shows the
//! phrase in its exception). Every decision is logged (tracing, target `airlock::network`) and
//! collected for the run's result. Bounded everywhere: header size, header and ClientHello
//! read deadlines (slowloris), resolve and connect timeouts, idle timeout, concurrent
//! connections (excess waits in the listen backlog), and the log's length. Dropping [`Proxy`]
//! stops it and closes every connection.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

use super::allowlist::{Allowlist, HostError, classify, normalize_host};
use super::resolver::Resolver;
use super::sni::{self, SniError};

/// Bounds of the proxy. The defaults suit package installs and ordinary HTTP clients.
#[derive(Clone, Debug)]
pub struct ProxyLimits {
    /// Largest request head (request line and headers).
    pub max_head_bytes: usize,
    /// The whole request head must arrive within this (slowloris).
    pub head_timeout: Duration,
    /// The TLS ClientHello must arrive within this after `200 Connection established`.
    pub hello_timeout: Duration,
    pub resolve_timeout: Duration,
    /// Per upstream address tried.
    pub connect_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// Decisions kept for the result; later ones are counted in `dropped`.
    pub max_log_entries: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_head_bytes: 32 * 1024,
            head_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 256,
            max_log_entries: 1000,
        }
    }
}

/// What the proxy allows.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub allowlist: Arc<Allowlist>,
    /// Explicit opt-in: names may lead to private, loopback, link-local and carrier-grade NAT
    /// addresses. Cloud metadata, unspecified, broadcast and multicast stay refused.
    pub allow_private: bool,
    pub resolver: Arc<dyn Resolver>,
    pub limits: ProxyLimits,
}

/// One judged request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// `CONNECT`, or the HTTP method of a plain request (empty when none could be read).
    pub method: String,
    /// The requested host as normalized (lowercase), or as sent when it is not a name.
    pub host: String,
    pub port: u16,
    /// The upstream address connected to.
    pub address: Option<String>,
    /// Allowed: the rule that matched. Blocked: why.
    pub reason: String,
    /// Blocked: what would allow it, when something may.
    pub fix: Option<String>,
}

/// The decisions of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLog {
    pub decisions: Vec<Decision>,
    /// Decisions beyond [`ProxyLimits::max_log_entries`], not kept.
    pub dropped: u64,
}

impl NetworkLog {
    pub fn blocked(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.allowed)
    }
}

/// A running proxy serving one listener. Dropping it stops the proxy and closes every
/// connection it holds.
pub struct Proxy {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<NetworkLog>>,
}

impl Proxy {
    /// Serves `listener` on a thread of its own (a single-threaded tokio runtime), so the
    /// synchronous supervisor can wait on its sandbox meanwhile.
    pub fn start(listener: std::net::TcpListener, config: ProxyConfig) -> io::Result<Proxy> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let log = Arc::new(Mutex::new(NetworkLog::default()));
        let shared = Arc::new(Shared {
            config,
            log: Arc::clone(&log),
        });
        let thread = std::thread::Builder::new()
            .name("airlock-proxy".into())
            .spawn(move || {
                rt.block_on(serve(listener, shared, stopped));
                // Drops every connection task now; a getaddrinfo still running on the
                // blocking pool finishes on its own.
                rt.shutdown_background();
            })?;
        Ok(Proxy {
            stop: Some(stop),
            thread: Some(thread),
            log,
        })
    }

    /// The decisions so far.
    pub fn log(&self) -> NetworkLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops the proxy (closing every connection) and returns its decisions.
    pub fn stop(mut self) -> NetworkLog {
        self.shutdown();
        self.log()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Shared {
    config: ProxyConfig,
    log: Arc<Mutex<NetworkLog>>,
}

impl Shared {
    fn record(&self, d: Decision) {
        if d.allowed {
            tracing::info!(target: "airlock::network", method = %d.method, host = %d.host,
                port = d.port, address = ?d.address, rule = %d.reason, "allowed");
        } else {
            tracing::info!(target: "airlock::network", method = %d.method, host = %d.host,
                port = d.port, reason = %d.reason, "blocked");
        }
        if let Ok(mut log) = self.log.lock() {
            if log.decisions.len() < self.config.limits.max_log_entries {
                log.decisions.push(d);
            } else {
                log.dropped += 1;
            }
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(shared.config.limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut stop => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        match accepted {
            Ok((sock, _)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    handle(sock, &shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: not fatal.
                tracing::warn!(target: "airlock::network", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// [`Refusal::status`] when nothing at all arrived (a probe, an idle connection): no answer,
/// no log entry.
const SILENT: u16 = 0;
/// [`Refusal::status`] when no HTTP answer is possible any more (inside an established tunnel,
/// or the client is gone): logged only.
const NO_RESPONSE: u16 = 1;

/// Why a request was not served, with the status the client gets.
#[derive(Debug)]
struct Refusal {
    status: u16,
    /// Short, one line; also the reason phrase.
    reason: String,
    fix: Option<String>,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            fix: None,
        }
    }
    fn forbidden(reason: impl Into<String>, fix: Option<String>) -> Refusal {
        Refusal {
            status: 403,
            reason: reason.into(),
            fix,
        }
    }
}

/// The request being judged, for its log entry.
#[derive(Default)]
struct Target {
    method: String,
    host: String,
    port: u16,
}

impl Target {
    fn decision(&self, allowed: bool, reason: String, fix: Option<String>) -> Decision {
        Decision {
            allowed,
            method: self.method.clone(),
            host: self.host.clone(),
            port: self.port,
            address: None,
            reason,
            fix,
        }
    }
}

async fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let mut target = Target::default();
    let result = judge_and_serve(&mut client, shared, &mut target).await;
    if let Err(r) = result {
        if r.status == SILENT {
            return;
        }
        if r.status != NO_RESPONSE {
            let _ = write_refusal(&mut client, &r).await;
        }
        let fix = r.fix.clone();
        shared.record(target.decision(false, r.reason, fix));
    }
}

/// Serves one connection; `Err` is the refusal to answer and log.
async fn judge_and_serve(
    client: &mut TcpStream,
    shared: &Shared,
    target: &mut Target,
) -> Result<(), Refusal> {
    let limits = &shared.config.limits;
    let (buf, head_len) = read_head(client, limits).await?;
    let head = parse_head(&buf[..head_len], target)?;
    let leftover = buf[head_len..].to_vec();

    if head.method == "CONNECT" {
        target.host = head.target.clone();
        let (host, port) = parse_authority(&head.target, None)?;
        target.host = host.clone();
        target.port = port;
        // No Host check here: clients disagree on it (Node sends the proxy's own address).
        // What the tunnel carries is pinned by the ClientHello's SNI below.
        let name = judge_name(&host, shared)?;
        target.host = name.clone();
        let rule = rule_of(&name, shared);
        let (upstream, addr) = open_upstream(&name, port, shared).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .map_err(|_| Refusal::new(NO_RESPONSE, "the client went away"))?;
        let hello = read_client_hello(client, leftover, limits).await;
        let hello = match hello {
            Ok(h) => h,
            Err(reason) => {
                let _ = client.write_all(&TLS_ACCESS_DENIED).await;
                return Err(Refusal::new(NO_RESPONSE, reason));
            }
        };
        if normalize_host(&hello.1).ok().as_deref() != Some(name.as_str()) {
            let _ = client.write_all(&TLS_ACCESS_DENIED).await;
            return Err(Refusal::new(
                1,
                format!(
                    "the TLS server name (SNI) {:?} does not match the CONNECT host {name}",
                    hello.1
                ),
            ));
        }
        let mut d = target.decision(true, rule, None);
        d.address = Some(addr.to_string());
        shared.record(d);
        let mut upstream = upstream;
        if upstream.write_all(&hello.0).await.is_err() {
            return Ok(());
        }
        relay(client, &mut upstream, limits.idle_timeout).await;
        return Ok(());
    }

    // Plain HTTP through the proxy: absolute form only.
    let lower = head.target.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &head.target[7..]
    } else if lower.starts_with("https://") {
        return Err(Refusal::new(
            400,
            "an https:// URL must go through CONNECT (set HTTPS_PROXY)",
        ));
    } else {
        return Err(Refusal::new(
            400,
            "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT",
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or("");
    let path = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    target.host = authority.to_string();
    let (host, port) = parse_authority(authority, Some(80))?;
    target.host = host.clone();
    target.port = port;
    let hosts = head.headers_named("host");
    match hosts.as_slice() {
        [] if head.version == 0 => {}
        [] => return Err(Refusal::new(400, "an HTTP/1.1 request needs a Host header")),
        [h] => {
            let (hh, hp) = parse_authority(&String::from_utf8_lossy(h), Some(80))
                .map_err(|r| Refusal::forbidden(format!("bad Host header: {}", r.reason), None))?;
            if hh != host || hp != port {
                return Err(Refusal::forbidden(
                    format!(
                        "the Host header {hh}:{hp} does not match the request's host {host}:{port}"
                    ),
                    None,
                ));
            }
        }
        _ => return Err(Refusal::new(400, "more than one Host header")),
    }
    let framing = body_framing(&head)?;
    let name = judge_name(&host, shared)?;
    target.host = name.clone();
    let rule = rule_of(&name, shared);
    let (mut upstream, addr) = open_upstream(&name, port, shared).await?;
    let mut d = target.decision(true, rule, None);
    d.address = Some(addr.to_string());
    shared.record(d);

    let out_head = forward_head(&head, &path);
    if upstream.write_all(&out_head).await.is_err() {
        return Ok(());
    }
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let activity = Activity::new();
    let body = async {
        forward_body(framing, leftover, &mut cr, &mut uw, &activity, limits).await?;
        // The body is through; nothing more from the client is forwarded.
        std::future::pending::<io::Result<()>>().await
    };
    let response = copy_idle(&mut ur, &mut cw, &activity, limits.idle_timeout);
    tokio::select! {
        _ = body => {}
        _ = response => {}
    }
    let _ = cw.shutdown().await;
    Ok(())
}

/// A fatal TLS `access_denied` alert, so a client sees why its handshake ended.
const TLS_ACCESS_DENIED: [u8; 7] = [21, 3, 3, 0, 2, 2, 49];

fn rule_of(name: &str, shared: &Shared) -> String {
    shared
        .config
        .allowlist
        .matching(name)
        .map(|r| format!("matches {r}"))
        .unwrap_or_default()
}

/// Checks a requested host against the allowlist; returns the normalized name.
fn judge_name(host: &str, shared: &Shared) -> Result<String, Refusal> {
    let name = match normalize_host(host) {
        Ok(n) => n,
        Err(HostError::IpLiteral) => {
            return Err(Refusal::forbidden(
                format!("{host} is an IP address; only names on the allowlist are reachable"),
                Some("connect by the host's name, and allow that name".into()),
            ));
        }
        Err(HostError::Invalid(why)) => {
            return Err(Refusal::new(
                400,
                format!("{host:?} is not a host name: {why}"),
            ));
        }
    };
    if shared.config.allowlist.matching(&name).is_none() {
        return Err(Refusal::forbidden(
            format!("{name} is not on the allowlist"),
            Some(format!(
                "add --allow-domain {name} (API: allowed_domains=[\"{name}\"])"
            )),
        ));
    }
    Ok(name)
}

/// Resolves `name`, checks every address, and connects to the first permitted one that
/// answers. Refused addresses are never contacted.
async fn open_upstream(
    name: &str,
    port: u16,
    shared: &Shared,
) -> Result<(TcpStream, SocketAddr), Refusal> {
    let cfg = &shared.config;
    let ips =
        match tokio::time::timeout(cfg.limits.resolve_timeout, cfg.resolver.resolve(name)).await {
            Ok(Ok(ips)) if !ips.is_empty() => ips,
            Ok(Ok(_)) => return Err(Refusal::new(502, format!("{name} has no addresses"))),
            Ok(Err(e)) => return Err(Refusal::new(502, format!("cannot resolve {name}: {e}"))),
            Err(_) => return Err(Refusal::new(504, format!("resolving {name} timed out"))),
        };
    let (permitted, refused): (Vec<IpAddr>, Vec<IpAddr>) = ips
        .into_iter()
        .partition(|ip| classify(*ip).permitted(cfg.allow_private));
    if permitted.is_empty() {
        let ip = refused[0];
        let class = classify(ip);
        let fix = matches!(class, super::allowlist::AddressClass::Private(_)).then(|| {
            "if that is intended, add --allow-private-addresses (API: allow_private=True)"
                .to_string()
        });
        let why = if fix.is_some() {
            "refused"
        } else {
            "always refused"
        };
        return Err(Refusal::forbidden(
            format!("{name} resolves to {ip}, a {} address: {why}", class.name()),
            fix,
        ));
    }
    let mut last = String::new();
    for ip in permitted {
        #[cfg(test)]
        tests::only_loopback(ip);
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(cfg.limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Ok(Err(e)) => last = format!("cannot connect to {name} ({addr}): {e}"),
            Err(_) => last = format!("connecting to {name} ({addr}) timed out"),
        }
    }
    Err(Refusal::new(502, last))
}

/// Reads until the end of the request head. Returns the buffer and the head's length.
async fn read_head(
    client: &mut TcpStream,
    limits: &ProxyLimits,
) -> Result<(Vec<u8>, usize), Refusal> {
    let deadline = tokio::time::Instant::now() + limits.head_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut scanned = 0usize;
    loop {
        let n = match tokio::time::timeout_at(deadline, client.read(&mut chunk)).await {
            Err(_) if buf.is_empty() => return Err(Refusal::new(SILENT, "")),
            Err(_) => {
                return Err(Refusal::new(
                    408,
                    format!(
                        "the request head did not arrive within {} s",
                        limits.head_timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(_)) | Ok(Ok(0)) if buf.is_empty() => return Err(Refusal::new(SILENT, "")),
            Ok(Err(_)) | Ok(Ok(0)) => {
                return Err(Refusal::new(
                    NO_RESPONSE,
                    "the client closed before the request head ended",
                ));
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // The head ends at an empty line (CRLF CRLF, or bare LF LF as httparse accepts).
        let from = scanned.saturating_sub(3);
        if let Some(end) = find_head_end(&buf[from..]) {
            let end = from + end;
            if end > limits.max_head_bytes {
                return Err(Refusal::new(431, "request head too large"));
            }
            return Ok((buf, end));
        }
        scanned = buf.len();
        if buf.len() > limits.max_head_bytes {
            return Err(Refusal::new(
                431,
                format!("request head larger than {} bytes", limits.max_head_bytes),
            ));
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

struct Head {
    method: String,
    target: String,
    /// Minor version: 0 or 1.
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn headers_named(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

fn parse_head(bytes: &[u8], target: &mut Target) -> Result<Head, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::new(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, "more than 100 request headers"));
        }
        Err(e) => return Err(Refusal::new(400, format!("malformed request: {e}"))),
    }
    let method = req.method.unwrap_or_default().to_string();
    target.method = method.clone();
    Ok(Head {
        method,
        target: req.path.unwrap_or_default().to_string(),
        version: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
    })
}

/// `host[:port]` (also `[v6]:port`) into the host as written and the port.
fn parse_authority(a: &str, default_port: Option<u16>) -> Result<(String, u16), Refusal> {
    let a = a.trim();
    let bad = |why: &str| Refusal::new(400, format!("{a:?} is not host:port: {why}"));
    if a.contains('@') {
        return Err(bad("credentials in the authority are not supported"));
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad("junk after ]")),
        };
        (format!("[{h}]"), port)
    } else if a.matches(':').count() > 1 {
        (a.to_string(), None) // a bare IPv6 literal: judged (and refused) as an IP literal
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (a.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad("the port is not 1-65535")),
        },
        (None, Some(d)) => d,
        (None, None) => return Err(bad("CONNECT needs a port")),
    };
    let host = match normalize_host(&host) {
        Ok(n) => n,
        Err(_) => host.to_ascii_lowercase(),
    };
    Ok((host, port))
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn body_framing(head: &Head) -> Result<Framing, Refusal> {
    let te = head.headers_named("transfer-encoding");
    let cl = head.headers_named("content-length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(Refusal::new(
                400,
                "both Transfer-Encoding and Content-Length: refused (request smuggling)",
            ));
        }
        let joined: Vec<String> = te
            .iter()
            .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
            .collect();
        if joined.len() != 1 || joined[0] != "chunked" {
            return Err(Refusal::new(
                501,
                "only `Transfer-Encoding: chunked` request bodies are supported",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut len: Option<u64> = None;
    for v in cl {
        let n = std::str::from_utf8(v)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Refusal::new(400, "bad Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(Refusal::new(400, "conflicting Content-Length headers"));
        }
        len = Some(n);
    }
    Ok(match len {
        Some(0) | None => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

/// Headers that concern one hop and are not forwarded (RFC 9110 §7.6.1), plus the proxy's
/// own credentials. `Upgrade` goes too: a plain-HTTP connection carries one request only.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
];

fn forward_head(head: &Head, path: &str) -> Vec<u8> {
    let listed: Vec<String> = head
        .headers_named("connection")
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(format!("{} {path} HTTP/1.1\r\n", head.method).as_bytes());
    let chunked = !head.headers_named("transfer-encoding").is_empty();
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || listed.contains(&lower) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Last time bytes moved on a connection, shared by both directions for the idle timeout.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A read that gives up only when neither direction has moved for `idle`.
async fn read_idle<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    activity: &Activity,
    idle: Duration,
) -> io::Result<usize> {
    loop {
        let wait = idle
            .saturating_sub(activity.idle_for())
            .max(Duration::from_millis(10));
        match tokio::time::timeout(wait, r.read(buf)).await {
            Ok(r) => {
                activity.touch();
                return r;
            }
            Err(_) if activity.idle_for() >= idle => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
            Err(_) => {}
        }
    }
}

async fn copy_idle<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    activity: &Activity,
    idle: Duration,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = read_idle(r, &mut buf, activity, idle).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        activity.touch();
    }
}

async fn relay(a: &mut TcpStream, b: &mut TcpStream, idle: Duration) {
    let activity = Activity::new();
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let _ = tokio::try_join!(
        copy_idle(&mut ar, &mut bw, &activity, idle),
        copy_idle(&mut br, &mut aw, &activity, idle),
    );
}

/// Forwards exactly the request's body as framed, starting with bytes already read.
async fn forward_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    framing: Framing,
    leftover: Vec<u8>,
    r: &mut R,
    w: &mut W,
    activity: &Activity,
    limits: &ProxyLimits,
) -> io::Result<()> {
    let mut src = Buffered {
        pending: leftover,
        pos: 0,
        r,
        activity,
        idle: limits.idle_timeout,
    };
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => src.copy_exact(n, w).await,
        Framing::Chunked => loop {
            let line = src.line(4096).await?;
            w.write_all(&line).await?;
            let text = String::from_utf8_lossy(&line);
            let size_hex = text.trim_end().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let t = src.line(8192).await?;
                    w.write_all(&t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        return Ok(());
                    }
                }
            }
            src.copy_exact(size, w).await?;
            let end = src.line(2).await?;
            if end != b"\r\n" && end != b"\n" {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk end"));
            }
            w.write_all(&end).await?;
        },
    }
}

/// A reader with bytes already buffered in front of it.
struct Buffered<'a, R> {
    pending: Vec<u8>,
    pos: usize,
    r: &'a mut R,
    activity: &'a Activity,
    idle: Duration,
}

impl<R: AsyncRead + Unpin> Buffered<'_, R> {
    async fn fill(&mut self) -> io::Result<()> {
        if self.pos < self.pending.len() {
            return Ok(());
        }
        self.pending.resize(16 * 1024, 0);
        self.pos = 0;
        let n = read_idle(self.r, &mut self.pending, self.activity, self.idle).await?;
        self.pending.truncate(n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body ended early",
            ));
        }
        Ok(())
    }

    async fn copy_exact<W: AsyncWrite + Unpin>(&mut self, mut n: u64, w: &mut W) -> io::Result<()> {
        while n > 0 {
            self.fill().await?;
            let avail = (self.pending.len() - self.pos) as u64;
            let take = avail.min(n) as usize;
            w.write_all(&self.pending[self.pos..self.pos + take])
                .await?;
            self.activity.touch();
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// One line including its LF, at most `max` bytes.
    async fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            self.fill().await?;
            let b = self.pending[self.pos];
            self.pos += 1;
            line.push(b);
            if b == b'\n' {
                return Ok(line);
            }
            if line.len() >= max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
        }
    }
}

/// Reads the tunnel's first bytes until a whole ClientHello is there: returns the bytes (to
/// forward) and the SNI, or why the tunnel is refused.
async fn read_client_hello(
    client: &mut TcpStream,
    mut buf: Vec<u8>,
    limits: &ProxyLimits,
) -> Result<(Vec<u8>, String), String> {
    let deadline = tokio::time::Instant::now() + limits.hello_timeout;
    let mut chunk = [0u8; 4096];
    loop {
        match sni::client_hello_sni(&buf) {
            Ok(Some(name)) => return Ok((buf, name)),
            Ok(None) if buf.len() > 2 * sni::MAX_HELLO_BYTES => {
                return Err(SniError::TooLarge.to_string());
            }
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "{e}: only TLS with a server name passes a CONNECT tunnel"
                ));
            }
        }
        match tokio::time::timeout_at(deadline, client.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err("the client closed the tunnel before its TLS ClientHello".into());
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                return Err(format!(
                    "no TLS ClientHello within {} s of the tunnel opening",
                    limits.hello_timeout.as_secs_f64()
                ));
            }
        }
    }
}

async fn write_refusal(client: &mut TcpStream, r: &Refusal) -> io::Result<()> {
    let phrase = match r.status {
        400 => "Bad Request".to_string(),
        403 => format!("Forbidden by airlock: {}", r.reason),
        408 => "Request Timeout".into(),
        431 => "Request Header Fields Too Large".into(),
        501 => "Not Implemented".into(),
        502 => "Bad Gateway".into(),
        504 => "Gateway Timeout".into(),
        _ => "Error".into(),
    };
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(max)
            .collect()
    };
    let mut body = format!("airlock proxy: {}", r.reason);
    if let Some(fix) = &r.fix {
        body.push_str(&format!("; to allow it: {fix}"));
    }
    body.push('\n');
    let msg = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Airlock-Blocked: {}\r\n\r\n{body}",
        r.status,
        clean(&phrase, 300),
        body.len(),
        clean(&r.reason, 300),
    );
    client.write_all(msg.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests;
