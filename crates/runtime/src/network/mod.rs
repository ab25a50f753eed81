//! Network policy (DESIGN §6): `none`, `allowlist`, `host`.
//!
//! - `none` (default): the jail's empty network namespace with its own loopback up.
//! - `allowlist`: the same empty namespace, plus a TCP listener on the sandbox's own
//!   `127.0.0.1:3128` that the jail creates inside the namespace and hands to the supervisor
//!   (`Policy::loopback_listener`). The supervisor serves that descriptor directly with the
//!   [`proxy`] — no Unix socket bridge and no helper process inside the sandbox is needed, and
//!   the sandbox still has no route of its own. The proxy variables of common tools point at
//!   it. An empty allowlist is exactly `none`.
//! - `host`: the host's network namespace; weaker, only on explicit request.
//!
//! [`NetworkSetup`] is the one entry point for anything that starts a sandbox — runs and
//! dependency installs alike: build it, [`apply`](NetworkSetup::apply) it to the policy, spawn,
//! then [`start`](NetworkSetup::start) the proxy on the spawned sandbox and keep the returned
//! [`Proxy`] until the sandbox has ended.

pub mod allowlist;
pub mod proxy;
pub mod resolver;
pub mod sni;

use std::sync::Arc;

use jail::{Network, Policy, Sandbox};

pub use allowlist::{AddressClass, Allowlist, Rule, classify};
pub use proxy::{Decision, NetworkLog, Proxy, ProxyConfig, ProxyLimits};
pub use resolver::{Resolver, StaticResolver, SystemResolver};

use crate::error::RuntimeError;
use crate::request::{NetworkMode, RunRequest};
use crate::result::{RunResult, Status};

/// The proxy's port on the sandbox's own loopback (the conventional proxy port).
pub const PROXY_PORT: u16 = 3128;

/// The hosts a Python package install needs when no mirror is configured: the public
/// index and its file host, as the interpreter's own pip names them (asked once per process;
/// airlock keeps no registry's name of its own).
pub fn default_python_index_hosts() -> Result<Vec<String>, RuntimeError> {
    static HOSTS: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    HOSTS
        .get_or_init(|| {
            let py = crate::language::locate(crate::diagnose::Language::Python).map_err(|e| e.to_string())?;
            let code = "from pip._internal.models.index import PyPI; print(PyPI.netloc); print(PyPI.file_storage_domain)";
            ask_hosts(std::process::Command::new(&py.executable).args(["-c", code]), false)
        })
        .clone()
        .map_err(|why| RuntimeError::invalid("index_url", format!("{why}; set AIRLOCK_INDEX_URL to the index to use")))
}

/// The host an npm install needs when no registry is configured: npm's own registry setting.
pub fn default_npm_registry_hosts() -> Result<Vec<String>, RuntimeError> {
    static HOSTS: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    HOSTS
        .get_or_init(|| {
            ask_hosts(
                std::process::Command::new("npm").args(["config", "get", "registry"]),
                true,
            )
        })
        .clone()
        .map_err(|why| {
            RuntimeError::invalid(
                "npm_registry",
                format!("{why}; set AIRLOCK_NPM_REGISTRY to the registry to use"),
            )
        })
}

/// Host names printed one per line by `cmd` (or URLs, whose hosts are taken).
fn ask_hosts(cmd: &mut std::process::Command, urls: bool) -> Result<Vec<String>, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot ask for the default package index: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot determine the default package index: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let hosts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            if urls {
                url_host(l)
            } else {
                Some(l.to_owned())
            }
        })
        .collect();
    if hosts.is_empty() {
        return Err("the installer named no default package index".into());
    }
    Ok(hosts)
}

/// Loopback names and addresses that tools must not send to the proxy.
const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The proxy variables set inside an allowlist sandbox, for `port` on its loopback: the
/// conventional ones in both cases (curl, Python, requests, uv, pip, git, Go, Rust clients),
/// npm's and yarn's own, pip's own, and Node's opt-in to honour them (Node >= 22.21/24.5;
/// older Node needs an explicit agent).
pub fn proxy_env(port: u16) -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{port}");
    let mut env = Vec::new();
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "npm_config_proxy",
        "npm_config_https_proxy",
        "YARN_HTTP_PROXY",
        "YARN_HTTPS_PROXY",
        "PIP_PROXY",
    ] {
        env.push((name, url.clone()));
    }
    for name in ["NO_PROXY", "no_proxy", "npm_config_noproxy"] {
        env.push((name, NO_PROXY.to_string()));
    }
    env.push(("NODE_USE_ENV_PROXY", "1".to_string()));
    env
}

/// A sandbox's network, decided before it starts.
#[derive(Clone, Debug)]
pub struct NetworkSetup {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    None,
    Host,
    Allowlist(ProxyConfig),
}

impl NetworkSetup {
    /// No network but the sandbox's own loopback.
    pub fn none() -> NetworkSetup {
        NetworkSetup { kind: Kind::None }
    }

    /// The host's network: weaker, only on explicit request.
    pub fn host() -> NetworkSetup {
        NetworkSetup { kind: Kind::Host }
    }

    /// Only `domains` (exact names or `*.suffix`), over HTTP(S) through the proxy. Empty means
    /// [`none`](NetworkSetup::none). `allow_private` is the explicit opt-in to names that lead
    /// to private, loopback, link-local or carrier-grade NAT addresses.
    ///
    /// For an installer: see [`for_install`].
    pub fn allowlist<S: AsRef<str>>(
        domains: &[S],
        allow_private: bool,
        resolver: Arc<dyn Resolver>,
    ) -> Result<NetworkSetup, RuntimeError> {
        let allowlist = Allowlist::parse(domains)
            .map_err(|why| RuntimeError::invalid("allowed_domains", why))?;
        if allowlist.is_empty() {
            return Ok(NetworkSetup::none());
        }
        Ok(NetworkSetup {
            kind: Kind::Allowlist(ProxyConfig {
                allowlist: Arc::new(allowlist),
                allow_private,
                resolver,
                limits: ProxyLimits::default(),
            }),
        })
    }

    /// The setup a run request asks for (validated by [`check_request`] first).
    pub(crate) fn for_request(req: &RunRequest) -> Result<NetworkSetup, RuntimeError> {
        match req.network {
            NetworkMode::None => Ok(NetworkSetup::none()),
            NetworkMode::Host => Ok(NetworkSetup::host()),
            NetworkMode::Allowlist => {
                let system: Arc<dyn Resolver> = Arc::new(SystemResolver);
                let resolver: Arc<dyn Resolver> = if req.pinned_hosts.is_empty() {
                    system
                } else {
                    let table = req.pinned_hosts.iter().map(|(k, v)| (k.clone(), v.clone()));
                    Arc::new(StaticResolver::new(table).with_fallback(system))
                };
                NetworkSetup::allowlist(&req.allowed_domains, req.allow_private, resolver)
            }
        }
    }

    /// What the sandbox effectively gets (`allowlist` with no domains is `none`).
    pub fn mode(&self) -> NetworkMode {
        match self.kind {
            Kind::None => NetworkMode::None,
            Kind::Host => NetworkMode::Host,
            Kind::Allowlist(_) => NetworkMode::Allowlist,
        }
    }

    /// Sets the policy's network, the proxy listener and the proxy variables (variables the
    /// caller set explicitly are kept).
    pub fn apply(&self, policy: &mut Policy) {
        match &self.kind {
            Kind::None => {
                policy.network = Network::None;
                policy.loopback_listener = None;
            }
            Kind::Host => {
                policy.network = Network::Host;
                policy.loopback_listener = None;
            }
            Kind::Allowlist(_) => {
                policy.network = Network::None;
                policy.loopback_listener = Some(PROXY_PORT);
                for (k, v) in proxy_env(PROXY_PORT) {
                    policy.env.entry(k.to_string()).or_insert(v);
                }
            }
        }
    }

    /// Starts the proxy on a sandbox spawned with an [applied](NetworkSetup::apply) policy.
    /// `None` for `none` and `host`. Keep the proxy until the sandbox has ended; dropping it
    /// stops it.
    pub fn start(&self, sandbox: &mut Sandbox) -> Result<Option<Proxy>, RuntimeError> {
        let Kind::Allowlist(config) = &self.kind else {
            return Ok(None);
        };
        let fd = sandbox.take_listener().ok_or_else(|| {
            RuntimeError::Network(
                "the sandbox handed over no proxy listener (was the policy applied?)".into(),
            )
        })?;
        let listener = std::net::TcpListener::from(fd);
        Proxy::start(listener, config.clone())
            .map(Some)
            .map_err(|e| RuntimeError::Network(format!("cannot start the proxy: {e}")))
    }
}

/// The network of a package install (DESIGN §5): only the index's or registry's hosts,
/// through the proxy, never the open internet.
///
/// - `default_hosts`: the public index ([`default_python_index_hosts`],
///   [`default_npm_registry_hosts`]), used when no mirror
///   is configured.
/// - `mirror_urls`: a configured index or registry (operator configuration, not user code);
///   its hosts replace the defaults, and since a mirror may well sit on a private network,
///   private addresses are then allowed (cloud metadata still is not).
/// - `remote_specs`: URL or VCS specifiers the caller explicitly allowed; their hosts are
///   added (only HTTP(S) works through the proxy: `git+ssh` does not).
/// - `offline`: no index at all, so no network.
///
/// A URL whose host is an IP address cannot be allowed (the allowlist holds names): the error
/// names `field`.
pub fn for_install(
    default_hosts: &[&str],
    mirror_urls: &[&str],
    remote_specs: &[&str],
    offline: bool,
    field: &str,
) -> Result<NetworkSetup, RuntimeError> {
    if offline {
        return Ok(NetworkSetup::none());
    }
    let mut hosts: Vec<String> = Vec::new();
    for url in mirror_urls.iter().chain(remote_specs) {
        if let Some(h) = url_host(url) {
            if Rule::parse(&h).is_err() {
                return Err(RuntimeError::invalid(
                    field,
                    format!(
                        "{url}: installs reach the network only through the allowlist proxy,                          which allows host names, not addresses: use the host's name"
                    ),
                ));
            }
            hosts.push(h);
        }
    }
    if mirror_urls.is_empty() {
        hosts.extend(default_hosts.iter().map(|h| h.to_string()));
    }
    NetworkSetup::allowlist(&hosts, !mirror_urls.is_empty(), Arc::new(SystemResolver))
}

/// The host of `scheme://[user@]host[:port]/...` somewhere in `text`, if any.
fn url_host(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .to_string()
            + "]"
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// Checks a request's network fields; each error names the field.
pub(crate) fn check_request(req: &RunRequest) -> Result<(), RuntimeError> {
    let allowlist = req.network == NetworkMode::Allowlist;
    if !allowlist && !req.allowed_domains.is_empty() {
        return Err(RuntimeError::invalid(
            "allowed_domains",
            "only used with network \"allowlist\" (CLI: --network allowlist --allow-domain D)",
        ));
    }
    if !allowlist && req.allow_private {
        return Err(RuntimeError::invalid(
            "allow_private",
            "only used with network \"allowlist\"",
        ));
    }
    if !allowlist && !req.pinned_hosts.is_empty() {
        return Err(RuntimeError::invalid(
            "pinned_hosts",
            "only used with network \"allowlist\"",
        ));
    }
    Allowlist::parse(&req.allowed_domains)
        .map_err(|why| RuntimeError::invalid("allowed_domains", why))?;
    for (name, ips) in &req.pinned_hosts {
        if allowlist::normalize_host(name).is_err() {
            return Err(RuntimeError::invalid(
                "pinned_hosts",
                format!("{name:?} is not a host name"),
            ));
        }
        if ips.is_empty() {
            return Err(RuntimeError::invalid(
                "pinned_hosts",
                format!("{name} has no addresses"),
            ));
        }
    }
    Ok(())
}

/// The network an effective request gets: `allowlist` with no domains is `none`.
pub(crate) fn effective_mode(req: &RunRequest) -> NetworkMode {
    match req.network {
        NetworkMode::Allowlist if req.allowed_domains.is_empty() => NetworkMode::None,
        m => m,
    }
}

/// One line naming what the proxy blocked and how to allow it, if it blocked anything.
pub fn blocked_hint(log: &NetworkLog) -> Option<String> {
    let blocked: Vec<&Decision> = log.blocked().collect();
    // The last refusal is the likeliest to have ended the run.
    let first = blocked
        .iter()
        .rev()
        .find(|d| !d.host.is_empty())
        .or(blocked.last())?;
    let what = if first.host.is_empty() {
        "a request".to_string()
    } else if first.method == "CONNECT" {
        format!("CONNECT {}:{}", first.host, first.port)
    } else {
        format!("{} http://{}:{}", first.method, first.host, first.port)
    };
    let mut hint = format!(
        "the network allowlist's proxy refused {what}: {}",
        first.reason
    );
    if let Some(fix) = &first.fix {
        hint.push_str(&format!("; to allow it: {fix}"));
    }
    if blocked.len() > 1 {
        hint.push_str(&format!(" ({} more refused)", blocked.len() - 1));
    }
    Some(hint)
}

/// What to say when a run under `allowlist` failed with a network error that never reached
/// the proxy (raw sockets, DNS).
const BYPASS_HINT: &str = "under network \"allowlist\" the sandbox has no DNS and no route \
    out: only HTTP(S) through the proxy at http://127.0.0.1:3128 (HTTP_PROXY/HTTPS_PROXY are \
    set) reaches the allowed domains";

/// When the run failed, gives its error a hint naming what the proxy refused (over a generic
/// hint, or where there was none), or explaining that only the proxy leads out.
pub(crate) fn annotate(result: &mut RunResult, log: &NetworkLog) {
    if result.status != Status::Ok
        && let Some(err) = result.error.as_mut()
    {
        let ours = err.message.contains("airlock") || err.hint.is_none();
        if let Some(h) = blocked_hint(log).filter(|_| ours) {
            err.hint = Some(h);
        } else if err.hint.is_none()
            && log.decisions.is_empty()
            && crate::diagnose::looks_like_network_error(&err.kind, &err.message)
        {
            err.hint = Some(BYPASS_HINT.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stand-ins for a public index and registry in these tests.
    const TEST_INDEX: &[&str] = &["index.example", "files.index.example"];
    const TEST_REGISTRY: &[&str] = &["registry.example"];

    fn req(network: NetworkMode) -> RunRequest {
        RunRequest {
            code: b"pass".to_vec(),
            network,
            ..RunRequest::default()
        }
    }

    fn field(r: &RunRequest) -> String {
        match r.validate() {
            Err(RuntimeError::InvalidInput { field, .. }) => field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn request_fields_are_checked_by_name() {
        let mut r = req(NetworkMode::Allowlist);
        r.allowed_domains = vec!["*foo".into()];
        assert_eq!(field(&r), "allowed_domains");
        r.allowed_domains = vec!["a..b".into()];
        assert_eq!(field(&r), "allowed_domains");
        r.allowed_domains = vec!["10.0.0.1".into()];
        assert_eq!(field(&r), "allowed_domains");
        r.allowed_domains = (0..300).map(|i| format!("h{i}.test")).collect();
        assert_eq!(field(&r), "allowed_domains");
        r.allowed_domains = vec!["ok.test".into()];
        r.validate().unwrap();
        r.pinned_hosts
            .insert("ok.test".into(), vec!["127.0.0.1".parse().unwrap()]);
        r.validate().unwrap();
        r.pinned_hosts.insert("bad..name".into(), vec![]);
        assert_eq!(field(&r), "pinned_hosts");

        let mut r = req(NetworkMode::None);
        r.allowed_domains = vec!["ok.test".into()];
        assert_eq!(field(&r), "allowed_domains");
        let mut r = req(NetworkMode::Host);
        r.allow_private = true;
        assert_eq!(field(&r), "allow_private");
    }

    #[test]
    fn an_empty_allowlist_is_no_network() {
        let r = req(NetworkMode::Allowlist);
        r.validate().unwrap();
        assert_eq!(effective_mode(&r), NetworkMode::None);
        let setup = NetworkSetup::for_request(&r).unwrap();
        assert_eq!(setup.mode(), NetworkMode::None);
        let mut p = Policy::default();
        setup.apply(&mut p);
        assert_eq!(p.network, Network::None);
        assert_eq!(p.loopback_listener, None);
        assert!(p.env.is_empty());
    }

    #[test]
    fn allowlist_policy_gets_listener_and_proxy_env_but_keeps_the_callers() {
        let mut r = req(NetworkMode::Allowlist);
        r.allowed_domains = vec!["index.example".into()];
        let setup = NetworkSetup::for_request(&r).unwrap();
        let mut p = Policy::default();
        p.env.insert("HTTP_PROXY".into(), "mine".into());
        setup.apply(&mut p);
        assert_eq!(p.network, Network::None);
        assert_eq!(p.loopback_listener, Some(PROXY_PORT));
        assert_eq!(p.env["HTTP_PROXY"], "mine");
        assert_eq!(p.env["https_proxy"], "http://127.0.0.1:3128");
        assert_eq!(p.env["PIP_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(p.env["npm_config_https_proxy"], "http://127.0.0.1:3128");
        assert_eq!(p.env["NO_PROXY"], "localhost,127.0.0.1,::1");
        // None of these is refused as a dangerous variable.
        for (k, _) in proxy_env(PROXY_PORT) {
            crate::request::check_env_name(k).unwrap();
        }
        for k in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "PIP_CERT",
        ] {
            crate::request::check_env_name(k).unwrap();
        }
    }

    #[test]
    fn installs_reach_the_index_hosts_only() {
        let rules = |s: &NetworkSetup| match &s.kind {
            Kind::Allowlist(c) => (
                c.allowlist
                    .rules()
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>(),
                c.allow_private,
            ),
            _ => (Vec::new(), false),
        };
        let index = for_install(TEST_INDEX, &[], &[], false, "index_url").unwrap();
        assert_eq!(
            rules(&index),
            (
                vec!["index.example".into(), "files.index.example".into()],
                false
            )
        );
        let mirror = for_install(
            TEST_INDEX,
            &["https://user:pw@mirror.corp.example:8443/simple"],
            &[
                "pkg @ https://files.example.org/pkg-1.0.tar.gz",
                "git+https://github.com/o/r.git",
            ],
            false,
            "index_url",
        )
        .unwrap();
        assert_eq!(
            rules(&mirror),
            (
                vec![
                    "mirror.corp.example".into(),
                    "files.example.org".into(),
                    "github.com".into()
                ],
                true
            )
        );
        let offline = for_install(TEST_REGISTRY, &[], &[], true, "npm_registry").unwrap();
        assert_eq!(offline.mode(), NetworkMode::None);
        for bad in ["http://10.0.0.5/simple", "http://[::1]:8080/"] {
            match for_install(TEST_INDEX, &[bad], &[], false, "index_url") {
                Err(RuntimeError::InvalidInput { field, .. }) => assert_eq!(field, "index_url"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn hints_name_the_blocked_host_and_the_fix() {
        let d = |allowed: bool, host: &str, reason: &str, fix: Option<&str>| Decision {
            allowed,
            method: "CONNECT".into(),
            host: host.into(),
            port: 443,
            address: None,
            reason: reason.into(),
            fix: fix.map(String::from),
        };
        let mut log = NetworkLog::default();
        assert_eq!(blocked_hint(&log), None);
        log.decisions
            .push(d(true, "index.example", "matches index.example", None));
        assert_eq!(blocked_hint(&log), None);
        log.decisions.push(d(
            false,
            "evil.test",
            "evil.test is not on the allowlist",
            Some("add --allow-domain evil.test"),
        ));
        log.decisions.push(d(false, "", "malformed request", None));
        let h = blocked_hint(&log).unwrap();
        assert!(h.contains("CONNECT evil.test:443"), "{h}");
        assert!(h.contains("add --allow-domain evil.test"), "{h}");
        assert!(h.contains("1 more"), "{h}");
    }
}
