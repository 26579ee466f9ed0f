//! Where a webhook may be delivered: an absolute `https` URL (`http` only
//! where the operator allows it) that does not lead into the gateway's own
//! networks.
//!
//! The gateway runs next to Redis, cloud metadata services and other
//! internal hosts; a customer who could register `https://169.254.169.254/`
//! or `https://10.0.0.5/` would make it a proxy into them (SSRF). So an
//! address is judged three times: an IP literal when the URL is parsed, a
//! host name's addresses at registration ([`check_host`], for a clear 422),
//! and again at every delivery, by the resolver the connection itself uses
//! (`webhooks::resolver`), since DNS may answer differently the second time.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ::url::{Host, Url};

use crate::model::Invalid;

/// The longest URL accepted, in characters: long enough for any real
/// endpoint with a query string, short enough to keep in every outbox entry.
pub const MAX_LEN: usize = 2048;

/// What an operator relaxes, for development and tests, where receivers
/// listen on `http://127.0.0.1`. Both are off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Accept `http` as well as `https`.
    pub allow_http: bool,
    /// Accept hosts that are, or resolve to, addresses [`forbidden`] names.
    pub allow_private: bool,
}

/// A webhook endpoint's URL, checked when parsed; after that the type is the
/// proof, and deliveries only need the host's addresses checked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Checks `value` against the rules and `policy`. A refusal names the rule
    /// that was broken, never the URL (it may carry a token in its query).
    pub fn parse(value: &str, policy: &UrlPolicy) -> Result<WebhookUrl, Invalid> {
        if value.chars().count() > MAX_LEN {
            return Err(Invalid::new(format!(
                "webhook URL must be at most {MAX_LEN} characters"
            )));
        }
        let url = Url::parse(value)
            .map_err(|e| Invalid::new(format!("webhook URL must be an absolute URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(Invalid::new("webhook URL must use https, not http")),
            other => {
                return Err(Invalid::new(format!(
                    "webhook URL must use https, not {other}"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                "webhook URL must not carry a user name or password",
            ));
        }
        if url.fragment().is_some() {
            return Err(Invalid::new("webhook URL must not have a #fragment"));
        }
        // For http and https the parser itself refuses an empty host; this
        // keeps the rule true should another scheme ever be allowed.
        if url.host().is_none() {
            return Err(Invalid::new("webhook URL must name a host"));
        }
        let url = WebhookUrl(url);
        url.check_literal(policy)?;
        Ok(url)
    }

    /// Refuses a host that is an IP literal in a [`forbidden`] range, or a
    /// `localhost` name (RFC 6761 reserves it for loopback), unless the
    /// policy allows private hosts.
    ///
    /// [`WebhookUrl::parse`] calls it; a delivery calls it again with the
    /// policy of the day, because reqwest never asks the resolver about an IP
    /// literal, so the guarded resolver cannot see these hosts.
    pub fn check_literal(&self, policy: &UrlPolicy) -> Result<(), Invalid> {
        if policy.allow_private {
            return Ok(());
        }
        let refused = match self.0.host() {
            Some(Host::Ipv4(ip)) => forbidden(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => forbidden(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                name == "localhost" || name.ends_with(".localhost")
            }
            None => false,
        };
        if refused {
            return Err(forbidden_host());
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Why a host name was refused at registration.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// It is, or resolves to, an address the policy forbids (a 422).
    #[error(transparent)]
    Forbidden(#[from] Invalid),
    /// It did not resolve at all. Kept apart because it may be a passing DNS
    /// failure rather than a bad URL.
    #[error("webhook URL's host could not be resolved: {0}")]
    Unresolved(#[source] io::Error),
}

/// Resolves the URL's host and refuses it when any of its addresses is
/// [`forbidden`], so a registrant hears about it at once rather than through
/// failed deliveries.
///
/// This is advice, not the guard: DNS may answer otherwise by the time of a
/// delivery (rebinding), which is why deliveries go through the guarded
/// resolver.
pub async fn check_host(url: &WebhookUrl, policy: &UrlPolicy) -> Result<(), HostError> {
    url.check_literal(policy)?;
    match url.0.host() {
        Some(Host::Domain(name)) => {
            let port = url.0.port_or_known_default().unwrap_or(443);
            resolve_allowed(name, port, policy.allow_private).await?;
            Ok(())
        }
        // IP literals were judged above, and a parsed URL always has a host.
        Some(Host::Ipv4(_) | Host::Ipv6(_)) | None => Ok(()),
    }
}

/// Resolves `host` and returns its addresses, or refuses them all when any
/// one is forbidden: a name with one public and one private address must
/// not let a connection pick the private one.
pub(super) async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, HostError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(HostError::Unresolved)?
        .collect();
    if addrs.is_empty() {
        return Err(HostError::Unresolved(io::Error::new(
            io::ErrorKind::NotFound,
            "no addresses",
        )));
    }
    if !allow_private && addrs.iter().any(|a| forbidden(a.ip())) {
        return Err(HostError::Forbidden(forbidden_host()));
    }
    Ok(addrs)
}

/// The one refusal for a forbidden address. It does not say which address a
/// name resolved to, so registration cannot be used to map internal DNS.
fn forbidden_host() -> Invalid {
    Invalid::new(
        "webhook URL's host must not be, or resolve to, a loopback, private, \
         link-local or otherwise internal address",
    )
}

/// Whether a delivery must never connect to `ip`: loopback, private
/// (RFC 1918, CGNAT, IPv6 unique local), link-local (with the cloud
/// metadata address 169.254.169.254), unspecified, `0.0.0.0/8`, multicast,
/// broadcast and the reserved `240.0.0.0/4`.
///
/// An IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`,
/// the deprecated IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and 6to4
/// `2002::/16`) is judged by the IPv4 address it reaches.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0 // 0.0.0.0/8, with the unspecified address
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT
        || ip.is_link_local() // 169.254/16, cloud metadata
        || ip.is_multicast() // 224/4
        || a >= 240 // 240/4 reserved, with 255.255.255.255
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10, the old site-local
        || (first & 0xff00) == 0xff00 // ff00::/8, multicast
}

/// The IPv4 address an IPv6 one leads to, where it leads to one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    match ip.segments() {
        // ::ffff:a.b.c.d and ::a.b.c.d (`::` and `::1` land in 0.0.0.0/8).
        [0, 0, 0, 0, 0, 0xffff | 0, ..] => Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])),
        // 2002:aabb:ccdd::/48, 6to4.
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_private: false,
    };
    const OPEN: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private: true,
    };

    fn refusal(value: &str, policy: &UrlPolicy) -> String {
        WebhookUrl::parse(value, policy).unwrap_err().to_string()
    }

    #[test]
    fn a_public_https_url_is_accepted_as_written() {
        let url = WebhookUrl::parse("https://tesback.example/hooks/2fa", &STRICT).unwrap();
        assert_eq!(url.as_str(), "https://tesback.example/hooks/2fa");
        assert_eq!(url.to_string(), url.as_str());
    }

    #[test]
    fn http_needs_the_policy() {
        let value = "http://tesback.example/hooks/2fa";
        assert!(refusal(value, &STRICT).contains("https, not http"));
        let allow_http = UrlPolicy {
            allow_http: true,
            ..STRICT
        };
        assert!(WebhookUrl::parse(value, &allow_http).is_ok());
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        for (value, scheme) in [
            ("file:///etc/passwd", "file"),
            ("ftp://tesback.example/x", "ftp"),
            ("gopher://tesback.example/", "gopher"),
        ] {
            let message = refusal(value, &OPEN);
            assert!(message.contains(&format!("not {scheme}")), "{message}");
        }
    }

    #[test]
    fn userinfo_and_fragments_are_refused() {
        assert!(refusal("https://user:pw@tesback.example/", &OPEN).contains("user name"));
        assert!(refusal("https://user@tesback.example/", &OPEN).contains("user name"));
        assert!(refusal("https://:pw@tesback.example/", &OPEN).contains("user name"));
        assert!(refusal("https://tesback.example/#frag", &OPEN).contains("fragment"));
        assert!(refusal("https://tesback.example/#", &OPEN).contains("fragment"));
    }

    #[test]
    fn relative_and_hostless_urls_are_refused() {
        assert!(refusal("/hooks/2fa", &OPEN).contains("absolute"));
        assert!(refusal("tesback.example/hooks", &OPEN).contains("absolute"));
        assert!(WebhookUrl::parse("https://", &OPEN).is_err());
        assert!(WebhookUrl::parse("", &OPEN).is_err());
    }

    #[test]
    fn the_length_limit_counts_characters() {
        let base = "https://tesback.example/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_LEN - base.len()));
        assert!(WebhookUrl::parse(&at_limit, &STRICT).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(over.len(), 2049);
        assert!(refusal(&over, &STRICT).contains("at most 2048"));
    }

    #[test]
    fn internal_ip_literals_need_the_policy() {
        for value in [
            "https://127.0.0.1/",
            "https://127.8.9.10:8443/x",
            "https://[::1]/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://255.255.255.255/",
            "https://224.0.0.1/",
            "https://[ff02::1]/",
            // The WHATWG parser reads these as 127.0.0.1; so must the check.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://localhost/",
            "https://api.localhost./",
        ] {
            let message = refusal(value, &STRICT);
            assert!(message.contains("internal address"), "{value}: {message}");
            let allow_private = UrlPolicy {
                allow_private: true,
                ..STRICT
            };
            assert!(WebhookUrl::parse(value, &allow_private).is_ok(), "{value}");
        }
    }

    #[test]
    fn public_ip_literals_are_accepted() {
        for value in [
            "https://93.184.216.34/",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
            "https://100.128.0.1/",
            "https://172.32.0.1/",
        ] {
            assert!(WebhookUrl::parse(value, &STRICT).is_ok(), "{value}");
        }
    }

    #[test]
    fn the_forbidden_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.168.0.1",
            "100.64.0.0",
            "100.127.255.255",
            "169.254.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "239.255.255.255",
            "ff00::",
            "ff02::1",
            "255.255.255.255",
            "240.0.0.1",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(ip(s)), "{s} should be forbidden");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "169.253.255.255",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
            "fe00::1",
        ] {
            assert!(!forbidden(ip(s)), "{s} should be allowed");
        }
    }

    #[tokio::test]
    async fn check_host_refuses_a_name_for_loopback() {
        let url = WebhookUrl::parse("https://localhost:8443/hooks", &OPEN).unwrap();
        let refused = check_host(&url, &STRICT).await.unwrap_err();
        assert!(matches!(refused, HostError::Forbidden(_)), "{refused:?}");
        check_host(&url, &OPEN).await.unwrap();
    }

    #[tokio::test]
    async fn resolution_refuses_every_address_when_one_is_forbidden() {
        // localhost resolves (from /etc/hosts, no network) to loopback only;
        // the refusal is for the name, whatever it resolved to.
        let refused = resolve_allowed("localhost", 443, false).await.unwrap_err();
        assert!(matches!(refused, HostError::Forbidden(_)));
        let addrs = resolve_allowed("localhost", 443, true).await.unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 443)
        );
    }
}
