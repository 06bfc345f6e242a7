//! Which web origins may use the gateway from a browser: the HTTP API
//! (CORS) and WebSocket upgrades. Like Centrifugo's `allowed_origins`.
//!
//! A request without an `Origin` header is not from a browser page and is
//! never refused here (CORS protects browsers' users, tokens protect the
//! API). A request with one is allowed when the origin, compared whole
//! (scheme, host and port), is one of the gateway's own, or listed in
//! `allowed_origins`, or the list is `*` (the default in `--dev` when none
//! is set). Anything else gets 403 before a route runs: a WebSocket upgrade
//! never becomes a socket.
//!
//! The gateway's own origins come from the address it listens on, never
//! from the request: `http://` and the listen port on the listen address,
//! and on `localhost`, `127.0.0.1` and `[::1]` when it listens on loopback
//! or on every address ([`Origins::serving`]). The request's `Host` is the
//! attacker's to choose: a page of `http://evil.example:8080` whose name
//! was rebound to the gateway's address (DNS rebinding) sends
//! `Host: evil.example:8080` and `Origin: http://evil.example:8080`, which
//! agree with each other but with none of these. Pages served under
//! another name (a TLS proxy, a load balancer's name) are listed in
//! `allowed_origins`.

use std::net::{IpAddr, SocketAddr};

/// The `allowed_origins` setting, and once the gateway listens, its own
/// origins beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origins {
    /// `*`: any origin.
    any: bool,
    /// Listed origins, as [`normalize`] writes them.
    listed: Vec<String>,
    /// The gateway's own origins ([`Origins::serving`]), as [`normalize`]
    /// writes them; not part of the setting.
    own: Vec<String>,
}

impl Origins {
    /// Any origin may use the gateway.
    pub fn any() -> Origins {
        Origins {
            any: true,
            ..Origins::default()
        }
    }

    /// Nothing listed: only the gateway's own origins.
    pub fn is_empty(&self) -> bool {
        !self.any && self.listed.is_empty()
    }

    /// Parses a comma-separated list of origins (`https://app.example.com`,
    /// `http://localhost:3000`), or `*`; empty is the gateway's own only.
    pub fn parse(text: &str) -> Result<Origins, String> {
        let mut origins = Origins::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                origins.any = true;
                continue;
            }
            let (scheme, rest) = item.split_once("://").ok_or_else(|| {
                format!(
                    "`{item}` is not an origin like https://app.example.com (scheme://host[:port])"
                )
            })?;
            let host_ok = !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' ', '@'])
                && matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https");
            if !host_ok {
                return Err(format!(
                    "`{item}` is not an origin like https://app.example.com (http or https, a host, an optional port, no path)"
                ));
            }
            origins.listed.push(normalize(item));
        }
        Ok(origins)
    }

    /// These origins for a gateway listening on `listening`: the setting's,
    /// and the gateway's own (see the module documentation).
    pub fn serving(mut self, listening: SocketAddr) -> Origins {
        let port = listening.port();
        let ip = listening.ip();
        let mut own = Vec::new();
        if !ip.is_unspecified() {
            own.push(http_origin(ip, port));
        }
        if ip.is_loopback() || ip.is_unspecified() {
            own.push(normalize(&format!("http://localhost:{port}")));
        }
        match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => {
                own.push(http_origin(IpAddr::from([127, 0, 0, 1]), port))
            }
            // On every IPv6 address, Linux takes IPv4 connections too.
            IpAddr::V6(v6) if v6.is_unspecified() => {
                own.push(http_origin(IpAddr::from([127, 0, 0, 1]), port));
                own.push(http_origin(std::net::Ipv6Addr::LOCALHOST.into(), port));
            }
            _ => {}
        }
        own.dedup();
        self.own = own;
        self
    }

    /// The gateway's own origins, once it listens ([`Origins::serving`]).
    pub fn own(&self) -> &[String] {
        &self.own
    }

    /// Whether a request from a page of `origin` (its `Origin` header) may
    /// go on.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let origin = normalize(origin);
        self.own.contains(&origin) || self.listed.contains(&origin)
    }
}

/// `http://` and `port` on `ip`, as a browser writes it in `Origin`.
fn http_origin(ip: IpAddr, port: u16) -> String {
    normalize(&format!("http://{}", SocketAddr::new(ip, port)))
}

/// An origin as browsers serialize it, so that equal origins compare
/// equal: trimmed, lower-case, and without the scheme's default port.
fn normalize(origin: &str) -> String {
    let origin = origin.trim().to_ascii_lowercase();
    for (scheme, default_port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(default_port) {
                return bare.to_string();
            }
        }
    }
    origin
}

impl std::fmt::Display for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.any {
            return f.write_str("*");
        }
        f.write_str(&self.listed.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().expect("an address")
    }

    #[test]
    fn on_loopback_the_own_origins_are_the_loopback_names_with_the_port() {
        let own = Origins::parse("").unwrap().serving(at("127.0.0.1:8080"));
        assert!(own.is_empty());
        assert!(own.allows("http://127.0.0.1:8080"));
        assert!(own.allows("http://localhost:8080"));
        assert!(own.allows("HTTP://LocalHost:8080"));
        // Another port, scheme or name is another origin.
        assert!(!own.allows("http://127.0.0.1:8081"));
        assert!(!own.allows("https://127.0.0.1:8080"));
        assert!(!own.allows("http://127.0.0.1"));
        assert!(!own.allows("http://[::1]:8080"), "not listening on IPv6");
        assert!(!own.allows("http://evil.test:8080"));
        assert!(!own.allows("null"));
    }

    #[test]
    fn the_requests_host_plays_no_part() {
        // DNS rebinding: evil.test resolves to the gateway's address, and
        // the page's requests carry `Host: evil.test` to match its origin.
        let own = Origins::parse("").unwrap().serving(at("127.0.0.1:80"));
        assert!(
            own.allows("http://127.0.0.1"),
            "the default port is implied"
        );
        assert!(own.allows("http://localhost:80"));
        assert!(!own.allows("http://evil.test"));
        assert!(!own.allows("https://localhost"));
    }

    #[test]
    fn on_every_address_and_on_one() {
        let all = Origins::default().serving(at("0.0.0.0:9000"));
        assert_eq!(
            all.own(),
            ["http://localhost:9000", "http://127.0.0.1:9000"],
            "no origin names 0.0.0.0"
        );
        let all6 = Origins::default().serving(at("[::]:9000"));
        assert!(all6.allows("http://[::1]:9000"));
        assert!(all6.allows("http://127.0.0.1:9000"));
        let one = Origins::default().serving(at("10.1.2.3:9000"));
        assert_eq!(one.own(), ["http://10.1.2.3:9000"]);
        assert!(!one.allows("http://localhost:9000"));
        let v6 = Origins::default().serving(at("[::1]:9000"));
        assert!(v6.allows("http://[::1]:9000"));
        assert!(v6.allows("http://localhost:9000"));
        assert!(!v6.allows("http://127.0.0.1:9000"));
    }

    #[test]
    fn listed_origins_compare_whole() {
        let listed = Origins::parse("https://app.example.com, http://localhost:3000").unwrap();
        let listed = listed.serving(at("0.0.0.0:8080"));
        assert!(listed.allows("https://app.example.com"));
        assert!(listed.allows("https://app.example.com:443"));
        assert!(listed.allows("http://localhost:3000"));
        assert!(listed.allows("http://localhost:8080"), "its own");
        assert!(!listed.allows("http://localhost:3001"));
        assert!(!listed.allows("http://app.example.com"));
        let with_port = Origins::parse("HTTPS://App.Example.com:443").unwrap();
        assert!(with_port.allows("https://app.example.com"));
        assert_eq!(with_port.to_string(), "https://app.example.com");

        assert!(Origins::parse("*").unwrap().allows("null"));
        assert!(Origins::parse("example.com").is_err());
        assert!(Origins::parse("https://example.com/path").is_err());
        assert!(Origins::parse("ftp://example.com").is_err());
    }
}
