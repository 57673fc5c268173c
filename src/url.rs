//! `ws://` and `wss://` URLs (RFC 6455 §3).
//!
//! ```text
//! ws-URI  = "ws:" "//" host [ ":" port ] path [ "?" query ]
//! wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]
//! ```

pub use crate::error::UrlError;
use std::fmt;
use std::net::Ipv6Addr;

/// The two WebSocket schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `ws://`, plain TCP, default port 80.
    Ws,
    /// `wss://`, TLS, default port 443.
    Wss,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// The port used when the URL names none (RFC 6455 §3).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
}

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketUrl {
    /// `ws` or `wss`.
    pub scheme: Scheme,
    /// The host without brackets (an IPv6 literal is stored as `::1`).
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
    /// The resource name: path and query, always starting with `/`.
    pub resource: String,
}

impl WebSocketUrl {
    /// True for `wss://`.
    pub fn secure(&self) -> bool {
        self.scheme == Scheme::Wss
    }

    /// True when the host is an IPv6 literal.
    pub fn is_ipv6(&self) -> bool {
        self.host.contains(':')
    }

    /// The `Host` header value: the port only when it is not the scheme's default
    /// (RFC 6455 §4.1 item 4), IPv6 literals in brackets.
    pub fn host_header(&self) -> String {
        let host = if self.is_ipv6() {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for WebSocketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.is_ipv6() {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme.as_str(),
            host,
            self.port,
            self.resource
        )
    }
}

/// Parses a `ws://` or `wss://` URL.
pub fn parse_url(input: &str) -> Result<WebSocketUrl, UrlError> {
    let input = input.trim_matches(|c: char| c == ' ' || c == '\t');
    let (scheme_str, rest) = input
        .split_once("://")
        .ok_or_else(|| UrlError::MissingScheme(input.to_string()))?;
    let scheme = if scheme_str.eq_ignore_ascii_case("ws") {
        Scheme::Ws
    } else if scheme_str.eq_ignore_ascii_case("wss") {
        Scheme::Wss
    } else {
        return Err(UrlError::UnsupportedScheme(scheme_str.to_string()));
    };
    // RFC 6455 §3: "Fragment identifiers are meaningless in the context of WebSocket URIs and
    // MUST NOT be used on these URIs."
    if let Some(pos) = rest.find('#') {
        return Err(UrlError::Fragment(rest[pos..].to_string()));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, resource_part) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => parse_port(p)?,
    };
    let resource = normalize_resource(resource_part)?;
    Ok(WebSocketUrl {
        scheme,
        host,
        port,
        resource,
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<&str>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    if let Some(after_bracket) = authority.strip_prefix('[') {
        let close = after_bracket
            .find(']')
            .ok_or_else(|| UrlError::InvalidHost(authority.to_string()))?;
        let literal = &after_bracket[..close];
        let addr: Ipv6Addr = literal
            .parse()
            .map_err(|_| UrlError::InvalidHost(format!("[{literal}]")))?;
        let tail = &after_bracket[close + 1..];
        let port = if tail.is_empty() {
            None
        } else if let Some(p) = tail.strip_prefix(':') {
            Some(p)
        } else {
            return Err(UrlError::InvalidHost(authority.to_string()));
        };
        return Ok((addr.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    // RFC 3986 §3.2.2 reg-name = *( unreserved / pct-encoded / sub-delims ).
    let valid = host.bytes().all(|b| {
        b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b) || (b >= 0x80)
        // internationalised names, passed on as given
    });
    if !valid {
        return Err(UrlError::InvalidHost(host.to_string()));
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort(text.to_string()));
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::InvalidPort(text.to_string())),
        Ok(port) => Ok(port),
    }
}

/// Path and query as sent on the request line: `/` when empty, non-ASCII percent-encoded,
/// whitespace and control characters refused (they would break the request line).
fn normalize_resource(part: &str) -> Result<String, UrlError> {
    let mut out = String::with_capacity(part.len() + 1);
    if !part.starts_with('/') {
        out.push('/');
    }
    for c in part.chars() {
        if c.is_ascii_control() || c == ' ' || c == '\u{7f}' {
            return Err(UrlError::InvalidResource(c));
        }
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> WebSocketUrl {
        match parse_url(url) {
            Ok(u) => u,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn default_ports() {
        assert_eq!(ok("ws://example.com").port, 80);
        assert_eq!(ok("wss://example.com").port, 443);
        assert_eq!(ok("ws://example.com:").port, 80);
    }

    #[test]
    fn explicit_port_and_host_header() {
        let u = ok("ws://Example.COM:8080/chat");
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 8080);
        assert_eq!(u.resource, "/chat");
        assert_eq!(u.host_header(), "example.com:8080");
        assert_eq!(ok("wss://example.com:443/").host_header(), "example.com");
    }

    #[test]
    fn empty_path_becomes_slash_and_query_is_kept() {
        assert_eq!(ok("ws://h").resource, "/");
        assert_eq!(ok("ws://h?x=1").resource, "/?x=1");
        assert_eq!(ok("wss://h/feed?x=1&y=2").resource, "/feed?x=1&y=2");
    }

    #[test]
    fn ipv6_literals() {
        let u = ok("ws://[::1]:9001/x");
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 9001);
        assert_eq!(u.host_header(), "[::1]:9001");
        assert_eq!(ok("wss://[2001:db8::1]").port, 443);
        assert!(matches!(
            parse_url("ws://[::1"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            parse_url("ws://[nothex]/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            parse_url("ws://[::1]x/"),
            Err(UrlError::InvalidHost(_))
        ));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(ok("WSS://h").scheme, Scheme::Wss);
        assert!(ok("wss://h").secure());
        assert!(!ok("ws://h").secure());
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            parse_url("http://h/"),
            Err(UrlError::UnsupportedScheme(s)) if s == "http"
        ));
        assert!(matches!(
            parse_url("example.com"),
            Err(UrlError::MissingScheme(_))
        ));
        assert!(matches!(parse_url("ws://h/#frag"), Err(UrlError::Fragment(f)) if f == "#frag"));
        assert!(matches!(
            parse_url("ws:///path"),
            Err(UrlError::MissingHost)
        ));
        assert!(matches!(parse_url("ws://:80/"), Err(UrlError::MissingHost)));
        for bad in ["0", "65536", "99999999", "8o", "-1", "+80"] {
            assert!(
                matches!(parse_url(&format!("ws://h:{bad}/")), Err(UrlError::InvalidPort(p)) if p == bad),
                "{bad}"
            );
        }
        assert!(matches!(parse_url("ws://u:p@h/"), Err(UrlError::UserInfo)));
        assert!(matches!(
            parse_url("ws://h/a b"),
            Err(UrlError::InvalidResource(' '))
        ));
        assert!(matches!(
            parse_url("ws://h/a\r\nX: y"),
            Err(UrlError::InvalidResource('\r'))
        ));
        assert!(matches!(
            parse_url("ws://ho st/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            parse_url("ws://h<>/"),
            Err(UrlError::InvalidHost(_))
        ));
    }

    #[test]
    fn non_ascii_path_is_percent_encoded() {
        assert_eq!(ok("ws://h/é").resource, "/%C3%A9");
    }

    #[test]
    fn display_round_trips() {
        let u = ok("wss://[::1]:8443/a?b");
        assert_eq!(u.to_string(), "wss://[::1]:8443/a?b");
        assert_eq!(ok(&u.to_string()), u);
    }
}
