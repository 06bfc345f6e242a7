//! Which web origins may use the gateway from a browser: the HTTP API
//! (CORS) and WebSocket upgrades. Like Centrifugo's `allowed_origins`.
//!
//! A request without an `Origin` header is not from a browser page and is
//! never refused here (CORS protects browsers' users, tokens protect the
//! API). A request with one is allowed when the origin is the gateway's own
//! (its host and port are the request's `Host`), or listed in
//! `allowed_origins`, or the list is `*` (the default in `--dev` when none
//! is set). Anything else gets 403 before a route runs: a WebSocket upgrade
//! never becomes a socket.

/// The `allowed_origins` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origins {
    /// `*`: any origin.
    any: bool,
    /// Listed origins, lower-case, as `scheme://host[:port]`.
    listed: Vec<String>,
}

impl Origins {
    /// Any origin may use the gateway.
    pub fn any() -> Origins {
        Origins {
            any: true,
            listed: Vec::new(),
        }
    }

    /// Nothing listed: only the gateway's own origin.
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
                && matches!(scheme, "http" | "https");
            if !host_ok {
                return Err(format!(
                    "`{item}` is not an origin like https://app.example.com (http or https, a host, an optional port, no path)"
                ));
            }
            origins.listed.push(item.to_ascii_lowercase());
        }
        Ok(origins)
    }

    /// Whether a request with `Origin: origin` and `Host: host` may go on.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        let own = origin
            .split_once("://")
            .zip(host)
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host.trim()));
        own || self.listed.contains(&origin)
    }
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

    #[test]
    fn own_listed_and_any() {
        let none = Origins::parse("").unwrap();
        assert!(none.is_empty());
        assert!(none.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(none.allows("HTTPS://Example.com", Some("example.com")));
        assert!(!none.allows("http://evil.test", Some("127.0.0.1:8080")));
        assert!(!none.allows("null", Some("127.0.0.1:8080")));
        assert!(!none.allows("http://127.0.0.1:8080", None));

        let listed = Origins::parse("https://app.example.com, http://localhost:3000").unwrap();
        assert!(listed.allows("https://app.example.com", Some("gw:8080")));
        assert!(listed.allows("http://localhost:3000", Some("gw:8080")));
        assert!(!listed.allows("http://localhost:3001", Some("gw:8080")));
        assert!(!listed.allows("http://app.example.com", Some("gw:8080")));

        assert!(Origins::parse("*").unwrap().allows("null", None));
        assert!(Origins::parse("example.com").is_err());
        assert!(Origins::parse("https://example.com/path").is_err());
        assert!(Origins::parse("ftp://example.com").is_err());
    }
}
