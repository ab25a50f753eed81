//! Which names a sandbox may reach (the rules), and which addresses a reachable name may lead
//! to (address classification).
//!
//! Rules are names, never addresses: the proxy resolves a name itself and then checks every
//! address it would connect to, so a name pointing at the host's own services, a private
//! network or a cloud metadata endpoint is refused even when the name is allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many `allowed_domains` entries per run.
pub const MAX_RULES: usize = 256;

/// One allowlist entry: an exact name, or `*.suffix` (any name below `suffix`, not `suffix`
/// itself — the convention of TLS wildcards and most proxies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Exact(String),
    /// The suffix without the leading `*.`.
    Suffix(String),
}

impl Rule {
    /// Parses one entry as a user wrote it. The error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Rule, String> {
        if raw.is_empty() {
            return Err("an empty entry is not a name".into());
        }
        if raw.contains("://") {
            return Err(format!(
                "{raw:?} is a URL: give the bare host name (e.g. `example.com`)"
            ));
        }
        if !raw.is_ascii() {
            return Err(format!(
                "{raw:?} is not ASCII: give the IDNA (punycode) form, e.g. `xn--bcher-kva.example`"
            ));
        }
        let (wild, name) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if name.contains('*') {
            return Err(format!(
                "{raw:?}: a wildcard is only allowed as a leading `*.` (as in `*.example.com`)"
            ));
        }
        if name.contains('/') || name.contains('@') {
            return Err(format!("{raw:?} is not a host name"));
        }
        if name.contains(':') && name.parse::<IpAddr>().is_err() && !name.starts_with('[') {
            return Err(format!(
                "{raw:?}: a port is not part of a rule; any port of an allowed name is reachable"
            ));
        }
        let name = match normalize_host(name) {
            Ok(n) => n,
            Err(HostError::IpLiteral) => {
                return Err(format!(
                    "{raw:?} is an IP address: only names can be allowed (the proxy resolves \
                     them and checks the addresses)"
                ));
            }
            Err(HostError::Invalid(why)) => return Err(format!("{raw:?}: {why}")),
        };
        Ok(if wild {
            Rule::Suffix(name)
        } else {
            Rule::Exact(name)
        })
    }

    /// Whether `host` (already normalized by [`normalize_host`]) falls under this rule.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Rule::Exact(n) => host == n,
            Rule::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Exact(n) => f.write_str(n),
            Rule::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

/// A run's allowlist. Empty means no network at all, never "everything".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    /// Parses every entry; the error names the first bad one and why.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Allowlist, String> {
        if entries.len() > MAX_RULES {
            return Err(format!(
                "{} entries; at most {MAX_RULES} are allowed (use `*.suffix` patterns)",
                entries.len()
            ));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(entries.len());
        for e in entries {
            let rule = Rule::parse(e.as_ref())?;
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        Ok(Allowlist { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that allows `host` (normalized), if any.
    pub fn matching(&self, host: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(host))
    }
}

/// Why a host as written in a request is not a name the allowlist can judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// An IPv4/IPv6 literal, or a numeric form the C resolver would read as one (`127.1`,
    /// `0x7f000001`, `2130706433`).
    IpLiteral,
    Invalid(String),
}

/// Lowercases a host name and drops one trailing dot; refuses IP literals and anything that is
/// not a DNS name (labels of 1–63 letters, digits, `-`, `_`; at most 253 bytes).
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let inner = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    if inner.parse::<IpAddr>().is_ok() {
        return Err(HostError::IpLiteral);
    }
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() {
        return Err(HostError::Invalid("empty name".into()));
    }
    if name.len() > 253 {
        return Err(HostError::Invalid("longer than 253 bytes".into()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(HostError::Invalid("has an empty label".into()));
        }
        if label.len() > 63 {
            return Err(HostError::Invalid(
                "has a label longer than 63 bytes".into(),
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostError::Invalid(
                "may hold only letters, digits, `-`, `_` and dots".into(),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::Invalid(
                "has a label starting or ending with `-`".into(),
            ));
        }
    }
    if labels.iter().all(|l| numeric_label(l)) {
        return Err(HostError::IpLiteral);
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(HostError::Invalid("ends in a numeric label".into()));
    }
    Ok(name)
}

/// A label `inet_aton` accepts as a number: decimal, octal (leading 0) or hex (`0x`).
fn numeric_label(l: &str) -> bool {
    let hex = l.strip_prefix("0x").or_else(|| l.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => l.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Where an address leads, for the decision whether the proxy may connect to it: the blocks
/// that hold a network's own services (private, loopback, link-local, carrier-grade NAT,
/// unique local) are `Private`; what can never be a legitimate destination is `Forbidden`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable: reachable for an allowed name.
    Public,
    /// Not globally routable (private, loopback, link-local, carrier-grade NAT, reserved):
    /// refused unless the caller explicitly allows private addresses.
    Private(&'static str),
    /// Never reachable, not even with private addresses allowed: cloud metadata endpoints
    /// (credentials live there), unspecified, broadcast and multicast addresses.
    Forbidden(&'static str),
}

impl AddressClass {
    /// Whether the proxy may connect to an address of this class.
    pub fn permitted(self, allow_private: bool) -> bool {
        match self {
            AddressClass::Public => true,
            AddressClass::Private(_) => allow_private,
            AddressClass::Forbidden(_) => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Private(n) | AddressClass::Forbidden(n) => n,
        }
    }
}

/// Cloud metadata endpoints: AWS/GCP/Azure/OpenStack/DigitalOcean/Oracle, AWS ECS task
/// metadata, Alibaba.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
];
/// AWS's IPv6 metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Forbidden("cloud metadata");
    }
    match (a, b, c) {
        // 0.0.0.0/8: connecting to 0.0.0.0 reaches the host itself on Linux.
        (0, _, _) => Forbidden("unspecified"),
        (255, 255, 255) if ip.is_broadcast() => Forbidden("broadcast"),
        (224..=239, _, _) => Forbidden("multicast"),
        (240..=255, _, _) => Forbidden("reserved"),
        (127, _, _) => Private("loopback"),
        (10, _, _) | (192, 168, _) => Private("private"),
        (172, 16..=31, _) => Private("private"),
        (169, 254, _) => Private("link-local"),
        (100, 64..=127, _) => Private("carrier-grade NAT"),
        // The other special-purpose blocks (documentation, benchmarking, protocol
        // assignments) hold no one's internal services; some networks even answer registry
        // names with them (a transparent mirror at 203.0.113.x). They pass.
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if ip == METADATA_V6 {
        return Forbidden("cloud metadata");
    }
    if ip.is_unspecified() {
        return Forbidden("unspecified");
    }
    if ip.is_loopback() {
        return Private("loopback");
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible (::a.b.c.d) forms reach
    // the IPv4 address they carry; so do NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return classify_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    match s[0] {
        0xff00..=0xffff => Forbidden("multicast"),
        0xfc00..=0xfdff => Private("unique local"),
        0xfe80..=0xfebf => Private("link-local"),
        0xfec0..=0xfeff => Private("site-local"),
        // Local-use NAT64 translates to whatever the local network maps it to.
        0x0064 if s[1] == 0xff9b && s[2] == 1 => Private("local NAT64"),
        // Global unicast (documentation and benchmarking blocks included, as for IPv4).
        0x2000..=0x3fff => Public,
        // Everything else is unassigned.
        _ => Private("reserved"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_match() {
        let exact = Rule::parse("Example.COM.").unwrap();
        assert_eq!(exact, Rule::Exact("example.com".into()));
        assert!(exact.matches("example.com"));
        assert!(!exact.matches("www.example.com"));
        assert!(!exact.matches("notexample.com"));

        let wild = Rule::parse("*.example.com").unwrap();
        assert_eq!(wild.to_string(), "*.example.com");
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(
            !wild.matches("example.com"),
            "a wildcard is below the suffix"
        );
        assert!(!wild.matches("badexample.com"));
        assert!(!wild.matches(".example.com"));
        assert!(!wild.matches("example.com.evil.test"));
    }

    #[test]
    fn bad_rules_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("*", "wildcard"),
            ("*foo.com", "wildcard"),
            ("foo.*.com", "wildcard"),
            ("foo.*", "wildcard"),
            ("*.", "empty"),
            ("a..b", "empty label"),
            (".a.b", "empty label"),
            ("1.2.3.4", "IP address"),
            ("::1", "IP address"),
            ("[::1]", "IP address"),
            ("127.1", "IP address"),
            ("0x7f000001", "IP address"),
            ("2130706433", "IP address"),
            ("a.123", "numeric"),
            ("https://example.com", "URL"),
            ("example.com:443", "port"),
            ("user@example.com", "not a host name"),
            ("bücher.de", "punycode"),
            ("-a.com", "`-`"),
            ("a b.com", "letters"),
        ] {
            let err = Rule::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(Rule::parse(&long).unwrap_err().contains("63"));
        let too_many: Vec<String> = (0..=MAX_RULES).map(|i| format!("h{i}.test")).collect();
        assert!(Allowlist::parse(&too_many).unwrap_err().contains("at most"));
    }

    #[test]
    fn allowlist_matching_and_dedup() {
        let list =
            Allowlist::parse(&["index.example", "*.files.example", "Index.Example"]).unwrap();
        assert_eq!(list.rules().len(), 2);
        assert_eq!(
            list.matching("index.example").unwrap().to_string(),
            "index.example"
        );
        assert_eq!(
            list.matching("cdn.files.example").unwrap().to_string(),
            "*.files.example"
        );
        assert!(list.matching("evil.org").is_none());
        assert!(Allowlist::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn request_hosts_normalize() {
        assert_eq!(normalize_host("Allowed.Test.").unwrap(), "allowed.test");
        assert_eq!(normalize_host("127.0.0.1"), Err(HostError::IpLiteral));
        assert_eq!(normalize_host("[::1]"), Err(HostError::IpLiteral));
        assert_eq!(
            normalize_host("[::ffff:127.0.0.1]"),
            Err(HostError::IpLiteral)
        );
        assert_eq!(normalize_host("017700000001"), Err(HostError::IpLiteral));
        assert_eq!(normalize_host("0x7f.1"), Err(HostError::IpLiteral));
        assert!(matches!(normalize_host("a..b"), Err(HostError::Invalid(_))));
        assert!(matches!(normalize_host("a\0b"), Err(HostError::Invalid(_))));
        assert!(matches!(normalize_host(""), Err(HostError::Invalid(_))));
    }

    #[test]
    fn addresses_are_classified() {
        use AddressClass::*;
        for (a, class) in [
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("2606:4700::1111", Public),
            ("10.0.0.1", Private("private")),
            ("10.255.255.255", Private("private")),
            ("172.16.0.1", Private("private")),
            ("172.31.255.255", Private("private")),
            ("192.168.1.1", Private("private")),
            ("127.0.0.1", Private("loopback")),
            ("127.255.0.9", Private("loopback")),
            ("169.254.1.1", Private("link-local")),
            ("100.64.0.1", Private("carrier-grade NAT")),
            ("100.127.255.255", Private("carrier-grade NAT")),
            ("198.18.0.1", Public),
            ("203.0.113.80", Public),
            ("::1", Private("loopback")),
            ("fc00::1", Private("unique local")),
            ("fd12:3456::1", Private("unique local")),
            ("fe80::1", Private("link-local")),
            ("febf::1", Private("link-local")),
            ("2001:db8::1", Public),
            ("64:ff9b:1::a", Private("local NAT64")),
            ("4000::1", Private("reserved")),
            ("::ffff:127.0.0.1", Private("loopback")),
            ("::ffff:10.1.2.3", Private("private")),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Private("loopback")),
            ("64:ff9b::a00:1", Private("private")),
            ("64:ff9b::808:808", Public),
            ("2002:7f00:1::", Private("loopback")),
            ("2002:c0a8:101::1", Private("private")),
            ("169.254.169.254", Forbidden("cloud metadata")),
            ("169.254.170.2", Forbidden("cloud metadata")),
            ("100.100.100.200", Forbidden("cloud metadata")),
            ("fd00:ec2::254", Forbidden("cloud metadata")),
            ("::ffff:169.254.169.254", Forbidden("cloud metadata")),
            ("64:ff9b::a9fe:a9fe", Forbidden("cloud metadata")),
            ("0.0.0.0", Forbidden("unspecified")),
            ("0.1.2.3", Forbidden("unspecified")),
            ("::", Forbidden("unspecified")),
            ("::ffff:0.0.0.0", Forbidden("unspecified")),
            ("255.255.255.255", Forbidden("broadcast")),
            ("224.0.0.1", Forbidden("multicast")),
            ("ff02::1", Forbidden("multicast")),
            ("240.0.0.1", Forbidden("reserved")),
        ] {
            assert_eq!(classify(ip(a)), class, "{a}");
        }
    }

    #[test]
    fn only_public_passes_unless_private_is_allowed_and_metadata_never() {
        assert!(classify(ip("8.8.8.8")).permitted(false));
        assert!(!classify(ip("127.0.0.1")).permitted(false));
        assert!(classify(ip("127.0.0.1")).permitted(true));
        assert!(classify(ip("::1")).permitted(true));
        assert!(!classify(ip("169.254.169.254")).permitted(true));
        assert!(!classify(ip("0.0.0.0")).permitted(true));
    }
}
