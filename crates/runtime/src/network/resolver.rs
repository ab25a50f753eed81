//! Name resolution for the proxy. The proxy resolves names itself (the sandbox has no DNS) and
//! then checks every address, so what the resolver answers decides where a connection may go.
//!
//! Production uses the host's resolver ([`SystemResolver`], `getaddrinfo`). [`StaticResolver`]
//! answers from a fixed table — pinned addresses (like curl's `--resolve`), and the way tests
//! point test names at their loopback servers without any DNS. A pinned answer goes through
//! the same address checks as any other, so pinning cannot widen what is reachable.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves a host name (already normalized: lowercase, no trailing dot) to addresses.
pub trait Resolver: Send + Sync + fmt::Debug {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The host's resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut ips: Vec<IpAddr> = Vec::new();
            for sa in tokio::net::lookup_host((host, 0)).await? {
                if !ips.contains(&sa.ip()) {
                    ips.push(sa.ip());
                }
            }
            Ok(ips)
        })
    }
}

/// Answers from a fixed table; names not in it go to `fallback`, or fail when there is none.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    table: BTreeMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolver>>,
}

impl StaticResolver {
    /// Names are matched case-insensitively, without a trailing dot.
    pub fn new(table: impl IntoIterator<Item = (String, Vec<IpAddr>)>) -> StaticResolver {
        StaticResolver {
            table: table
                .into_iter()
                .map(|(k, v)| {
                    let k = k.strip_suffix('.').unwrap_or(&k).to_ascii_lowercase();
                    (k, v)
                })
                .collect(),
            fallback: None,
        }
    }

    /// Names outside the table are resolved by `fallback`.
    pub fn with_fallback(mut self, fallback: Arc<dyn Resolver>) -> StaticResolver {
        self.fallback = Some(fallback);
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            match (self.table.get(host), &self.fallback) {
                (Some(ips), _) => Ok(ips.clone()),
                (None, Some(f)) => f.resolve(host).await,
                (None, None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the static resolver's table"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_answers_and_falls_back() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let inner = Arc::new(StaticResolver::new([("other.test".to_string(), vec![b])]));
        let r = StaticResolver::new([("Allowed.Test.".to_string(), vec![a])]);
        assert_eq!(r.resolve("allowed.test").await.unwrap(), vec![a]);
        assert_eq!(
            r.resolve("other.test").await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let r = r.with_fallback(inner);
        assert_eq!(r.resolve("other.test").await.unwrap(), vec![b]);
    }
}
