//! Proxy tunnels, sans-IO: the proxy URL, then the handshake that turns a connection to the
//! proxy into a byte stream to the target: HTTP `CONNECT` (RFC 9110 §9.3.6, RFC 9112 §3.2.3),
//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), and SOCKS4a.
//!
//! A [`Tunnel`] takes bytes from the proxy and gives bytes for it, as the engine does: both
//! drivers move the bytes, none of them knows a rule of these protocols.

pub use crate::error::ProxyError;
use crate::handshake::base64_encode;
use crate::http::HeadReader;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The proxy protocols a proxy URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// `http://`: HTTP `CONNECT` over plain TCP.
    Http,
    /// `https://`: HTTP `CONNECT` over TLS to the proxy.
    Https,
    /// `socks5://`: SOCKS5, the client resolves the target's name.
    Socks5,
    /// `socks5h://`: SOCKS5, the proxy resolves the target's name.
    Socks5h,
    /// `socks4a://`: SOCKS4 with the 4a extension (the proxy resolves the name).
    Socks4a,
}

impl ProxyScheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
            ProxyScheme::Socks4a => "socks4a",
        }
    }

    /// The port when the URL names none: the scheme's for HTTP, 1080 for SOCKS.
    pub fn default_port(self) -> u16 {
        match self {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            _ => 1080,
        }
    }
}

/// A parsed proxy URL: `scheme://[user[:password]@]host[:port][/]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The protocol spoken to the proxy.
    pub scheme: ProxyScheme,
    /// The proxy's host, without brackets for an IPv6 literal.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
}

impl fmt::Debug for ProxyUrl {
    /// Never shows the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxyUrl {
    /// `scheme://host:port`, without the credentials: what messages and logs may show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme.as_str(),
            authority(&self.host, self.port)
        )
    }
}

impl ProxyUrl {
    /// Parses a proxy URL. Credentials are percent-decoded; the error never repeats them.
    pub fn parse(input: &str) -> Result<ProxyUrl, ProxyError> {
        let input = input.trim();
        let (scheme, rest) = input.split_once("://").ok_or(ProxyError::InvalidUrl {
            why: "missing scheme: expected http://, https://, socks5://, socks5h:// or socks4a://",
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyScheme::Http,
            "https" => ProxyScheme::Https,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            "socks4a" => ProxyScheme::Socks4a,
            _ => {
                return Err(ProxyError::InvalidUrl {
                    why: "unsupported scheme: expected http, https, socks5, socks5h or socks4a",
                })
            }
        };
        // A trailing slash is common in environment variables; any other path is a mistake.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(ProxyError::InvalidUrl {
                why: "a proxy URL has no path, query or fragment",
            });
        }
        // The password may contain '@' when not encoded: the last one ends the user info.
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                (
                    Some(percent_decode(user)?),
                    pass.map(percent_decode).transpose()?,
                )
            }
        };
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(ProxyError::InvalidUrl {
                        why: "invalid port",
                    })
                }
            },
        };
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            username,
            password,
        })
    }

    /// The connection to the proxy is TLS (`https://`).
    pub fn tls(&self) -> bool {
        self.scheme == ProxyScheme::Https
    }

    /// The client resolves the target's name itself and sends the proxy an address
    /// (`socks5://`); every other scheme sends the name.
    pub fn resolves_locally(&self) -> bool {
        self.scheme == ProxyScheme::Socks5
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<&str>), ProxyError> {
    let bad = ProxyError::InvalidUrl {
        why: "invalid host",
    };
    if let Some(inner) = hostport.strip_prefix('[') {
        let (literal, tail) = inner.split_once(']').ok_or(bad.clone())?;
        literal.parse::<Ipv6Addr>().map_err(|_| bad.clone())?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or(bad)?),
        };
        return Ok((literal.to_string(), port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || b >= 0x80);
    if !valid {
        return Err(bad);
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// Decodes `%XX` escapes (RFC 3986 §2.1) into UTF-8 text.
pub fn percent_decode(text: &str) -> Result<String, ProxyError> {
    let bad = ProxyError::InvalidUrl {
        why: "invalid percent-encoding in the user info",
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(bad.clone())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad)
}

/// `host:port`, an IPv6 literal in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `Authorization` / `Proxy-Authorization` value for Basic credentials (RFC 7617 §2:
/// base64 of `user-id ":" password`).
pub fn basic_credentials(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{username}:{password}").as_bytes())
    )
}

/// SOCKS5 (RFC 1928) constants.
mod socks5 {
    pub const VERSION: u8 = 5;
    pub const NO_AUTH: u8 = 0x00;
    pub const USER_PASS: u8 = 0x02;
    pub const NO_ACCEPTABLE: u8 = 0xFF;
    pub const CONNECT: u8 = 0x01;
    pub const IPV4: u8 = 0x01;
    pub const DOMAIN: u8 = 0x03;
    pub const IPV6: u8 = 0x04;
    /// RFC 1929 §2: "The VER field contains the current version of the subnegotiation, which
    /// is X'01'".
    pub const AUTH_VERSION: u8 = 1;
}

/// The text RFC 1928 §6 gives a SOCKS5 reply code.
pub fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned reply code",
    }
}

/// The text of a SOCKS4 reply code (90 granted, 91 to 93 refused).
pub fn socks4_reply_text(code: u8) -> &'static str {
    match code {
        90 => "request granted",
        91 => "request rejected or failed",
        92 => "request rejected: the proxy cannot reach identd on the client",
        93 => "request rejected: identd reports a different user id",
        _ => "unknown reply code",
    }
}

/// Where the handshake stands.
#[derive(Debug)]
enum Phase {
    /// The `CONNECT` request is sent; its response head is awaited.
    HttpResponse(HeadReader),
    /// The method selection message is sent; the server's choice is awaited (RFC 1928 §3).
    Socks5Method,
    /// Username and password are sent; the status is awaited (RFC 1929 §2).
    Socks5Auth,
    /// The CONNECT request is sent; the reply is awaited (RFC 1928 §6).
    Socks5Reply,
    /// The SOCKS4a request is sent; the 8-byte reply is awaited.
    Socks4Reply,
    /// The tunnel is open.
    Done,
}

/// One proxy handshake: bytes for the proxy out, the proxy's bytes in, until the tunnel is
/// open (then the target's bytes flow) or the proxy refused.
#[derive(Debug)]
pub struct Tunnel {
    proxy: ProxyUrl,
    target_host: String,
    target_port: u16,
    phase: Phase,
    /// What the proxy sent that is not consumed yet.
    input: Vec<u8>,
    /// What to write to the proxy.
    output: Vec<u8>,
}

/// Most bytes a SOCKS field of one length octet can hold.
const SOCKS_FIELD_MAX: usize = 255;

/// Most bytes a SOCKS5 reply can take: header, a 255-byte name and its length, port.
const SOCKS5_REPLY_MAX: usize = 4 + 1 + SOCKS_FIELD_MAX + 2;

fn socks_field(what: &'static str, value: &str) -> Result<u8, ProxyError> {
    match u8::try_from(value.len()) {
        Ok(n) if value.len() <= SOCKS_FIELD_MAX => Ok(n),
        _ => Err(ProxyError::TooLong {
            what,
            len: value.len(),
        }),
    }
}

impl Tunnel {
    /// A handshake through `proxy` to `host:port`, its first message queued.
    ///
    /// `host` is sent as given: a name, or an IP literal (a driver that resolves the name
    /// itself, as `socks5://` asks, passes the address).
    pub fn new(proxy: &ProxyUrl, host: &str, port: u16) -> Result<Tunnel, ProxyError> {
        let mut tunnel = Tunnel {
            proxy: proxy.clone(),
            target_host: host.to_string(),
            target_port: port,
            phase: Phase::Done,
            input: Vec::new(),
            output: Vec::new(),
        };
        tunnel.phase = match proxy.scheme {
            ProxyScheme::Http | ProxyScheme::Https => {
                tunnel.output = tunnel.connect_request()?;
                Phase::HttpResponse(HeadReader::new())
            }
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
                // RFC 1928 §3: VER, NMETHODS, METHODS. Username/password is offered only
                // when there are credentials to send.
                tunnel.output = if proxy.username.is_some() {
                    vec![socks5::VERSION, 2, socks5::NO_AUTH, socks5::USER_PASS]
                } else {
                    vec![socks5::VERSION, 1, socks5::NO_AUTH]
                };
                // The request must be buildable before anything is sent.
                tunnel.socks5_request()?;
                Phase::Socks5Method
            }
            ProxyScheme::Socks4a => {
                tunnel.output = tunnel.socks4a_request()?;
                Phase::Socks4Reply
            }
        };
        Ok(tunnel)
    }

    /// The proxy, for messages (never with credentials).
    pub fn proxy(&self) -> &ProxyUrl {
        &self.proxy
    }

    /// Takes the bytes to write to the proxy.
    pub fn data_to_send(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True once the tunnel is open.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Feeds bytes from the proxy. Returns `Some(rest)` once the tunnel is open, with the
    /// bytes that followed the proxy's answer (the target's first bytes, usually none);
    /// `None` while more bytes are needed. After each call, write [`Tunnel::data_to_send`].
    pub fn receive_data(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, ProxyError> {
        if self.is_established() {
            return Ok(Some(data.to_vec()));
        }
        self.input.extend_from_slice(data);
        loop {
            let used = match &mut self.phase {
                Phase::HttpResponse(reader) => {
                    let proxy = &self.proxy;
                    let Some((response, used)) =
                        reader.poll(&self.input).map_err(|e| ProxyError::Http {
                            proxy: proxy.to_string(),
                            error: e,
                        })?
                    else {
                        return Ok(None);
                    };
                    // RFC 9110 §9.3.6: "Any 2xx (Successful) response indicates that the
                    // sender (and all inbound proxies) will switch to tunnel mode immediately
                    // after the response header section"; and "A client MUST ignore any
                    // Content-Length or Transfer-Encoding header fields received in a
                    // successful response to CONNECT": no body is read.
                    if !(200..300).contains(&response.status) {
                        return Err(ProxyError::Status {
                            proxy: self.proxy.to_string(),
                            status: response.status,
                            headers: response.headers,
                        });
                    }
                    self.phase = Phase::Done;
                    used
                }
                Phase::Socks5Method => {
                    let [version, method] = match self.input.get(..2) {
                        Some(&[v, m]) => [v, m],
                        _ => return Ok(None),
                    };
                    self.check_version(version, socks5::VERSION)?;
                    match method {
                        socks5::NO_AUTH => {
                            self.output = self.socks5_request()?;
                            self.phase = Phase::Socks5Reply;
                        }
                        socks5::USER_PASS if self.proxy.username.is_some() => {
                            self.output = self.socks5_auth()?;
                            self.phase = Phase::Socks5Auth;
                        }
                        // RFC 1928 §3: "If the selected METHOD is X'FF', none of the methods
                        // listed by the client are acceptable, and the client MUST close the
                        // connection." The driver closes it on this error.
                        socks5::NO_ACCEPTABLE => {
                            return Err(ProxyError::NoAcceptableMethod {
                                proxy: self.proxy.to_string(),
                                offered_credentials: self.proxy.username.is_some(),
                            })
                        }
                        other => {
                            return Err(self.invalid(format!(
                                "the proxy chose authentication method {other:#04x}, which was \
                                 not offered"
                            )))
                        }
                    }
                    2
                }
                Phase::Socks5Auth => {
                    let [version, status] = match self.input.get(..2) {
                        Some(&[v, s]) => [v, s],
                        _ => return Ok(None),
                    };
                    self.check_version(version, socks5::AUTH_VERSION)?;
                    // RFC 1929 §2: "A STATUS field of X'00' indicates success. If the server
                    // returns a `failure' (STATUS value other than X'00') status, it MUST
                    // close the connection."
                    if status != 0 {
                        return Err(ProxyError::AuthFailed {
                            proxy: self.proxy.to_string(),
                            status,
                        });
                    }
                    self.output = self.socks5_request()?;
                    self.phase = Phase::Socks5Reply;
                    2
                }
                Phase::Socks5Reply => {
                    let Some(&[version, code, _reserved, atyp]) = self.input.get(..4) else {
                        return Ok(None);
                    };
                    self.check_version(version, socks5::VERSION)?;
                    // RFC 1928 §6: "When a reply (REP value other than X'00') indicates a
                    // failure, the SOCKS server MUST terminate the TCP connection shortly
                    // after sending the reply." The code is all that matters then.
                    if code != 0 {
                        return Err(ProxyError::SocksReply {
                            proxy: self.proxy.to_string(),
                            code,
                            message: socks5_reply_text(code),
                        });
                    }
                    let address_len = match atyp {
                        socks5::IPV4 => 4,
                        socks5::IPV6 => 16,
                        socks5::DOMAIN => match self.input.get(4) {
                            Some(&n) => 1 + usize::from(n),
                            None => return Ok(None),
                        },
                        other => {
                            return Err(self.invalid(format!("unknown address type {other:#04x}")))
                        }
                    };
                    let len = 4 + address_len + 2;
                    debug_assert!(len <= SOCKS5_REPLY_MAX);
                    if self.input.len() < len {
                        return Ok(None);
                    }
                    // BND.ADDR and BND.PORT say where the proxy connected from: not needed.
                    self.phase = Phase::Done;
                    len
                }
                Phase::Socks4Reply => {
                    let Some(&[version, code, ..]) = self.input.get(..8) else {
                        return Ok(None);
                    };
                    // The reply's VN is 0 (the SOCKS4 protocol description).
                    if version != 0 {
                        return Err(self.invalid(format!(
                            "reply version {version}, expected 0 (is this a SOCKS4 proxy?)"
                        )));
                    }
                    if code != 90 {
                        return Err(ProxyError::SocksReply {
                            proxy: self.proxy.to_string(),
                            code,
                            message: socks4_reply_text(code),
                        });
                    }
                    self.phase = Phase::Done;
                    8
                }
                Phase::Done => 0,
            };
            let rest = self.input.split_off(used.min(self.input.len()));
            self.input = rest;
            if self.is_established() {
                return Ok(Some(std::mem::take(&mut self.input)));
            }
        }
    }

    /// The proxy closed the connection before the tunnel was open.
    pub fn receive_eof(&self) -> ProxyError {
        ProxyError::Closed {
            proxy: self.proxy.to_string(),
            received: self.input.len(),
        }
    }

    fn invalid(&self, why: String) -> ProxyError {
        ProxyError::InvalidReply {
            proxy: self.proxy.to_string(),
            why,
        }
    }

    fn check_version(&self, got: u8, expected: u8) -> Result<(), ProxyError> {
        if got == expected {
            Ok(())
        } else {
            Err(self.invalid(format!(
                "version {got} in the reply, expected {expected} (is this a SOCKS{} proxy?)",
                if expected == socks5::AUTH_VERSION {
                    5
                } else {
                    expected
                }
            )))
        }
    }

    /// The `CONNECT` request (RFC 9110 §9.3.6, RFC 9112 §3.2.3).
    fn connect_request(&self) -> Result<Vec<u8>, ProxyError> {
        // RFC 9112 §3.2.3: "When making a CONNECT request to establish a tunnel through one or
        // more proxies, a client MUST send only the host and port of the tunnel destination
        // as the request-target." The port is always written, also the scheme's default.
        let target = authority(&self.target_host, self.target_port);
        if !self
            .target_host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@[]".contains(&b) || b == b':')
        {
            return Err(ProxyError::InvalidUrl {
                why: "the target host cannot be written in a CONNECT request",
            });
        }
        let mut request = format!("CONNECT {target} HTTP/1.1\r\n");
        // RFC 9112 §3.2: "A client MUST send a Host header field in all HTTP/1.1 request
        // messages."
        request.push_str(&format!("Host: {target}\r\n"));
        if let Some(user) = &self.proxy.username {
            let password = self.proxy.password.as_deref().unwrap_or("");
            if user.contains(':') {
                // RFC 7617 §2: "a user-id containing a colon character is invalid".
                return Err(ProxyError::InvalidUrl {
                    why: "a Basic user name cannot contain ':'",
                });
            }
            if user.chars().chain(password.chars()).any(char::is_control) {
                return Err(ProxyError::InvalidUrl {
                    why: "control characters in the proxy credentials",
                });
            }
            request.push_str(&format!(
                "Proxy-Authorization: {}\r\n",
                basic_credentials(user, password)
            ));
        }
        request.push_str("\r\n");
        Ok(request.into_bytes())
    }

    /// RFC 1929 §2: VER, ULEN, UNAME, PLEN, PASSWD.
    fn socks5_auth(&self) -> Result<Vec<u8>, ProxyError> {
        let user = self.proxy.username.as_deref().unwrap_or("");
        let password = self.proxy.password.as_deref().unwrap_or("");
        let ulen = socks_field("SOCKS user name", user)?;
        let plen = socks_field("SOCKS password", password)?;
        let mut out = vec![socks5::AUTH_VERSION, ulen];
        out.extend_from_slice(user.as_bytes());
        out.push(plen);
        out.extend_from_slice(password.as_bytes());
        Ok(out)
    }

    /// RFC 1928 §4: VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT.
    fn socks5_request(&self) -> Result<Vec<u8>, ProxyError> {
        let mut out = vec![socks5::VERSION, socks5::CONNECT, 0];
        let host = &self.target_host;
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            out.push(socks5::IPV4);
            out.extend_from_slice(&ip.octets());
        } else if let Ok(ip) = host.parse::<Ipv6Addr>() {
            out.push(socks5::IPV6);
            out.extend_from_slice(&ip.octets());
        } else {
            // RFC 1928 §5: "the address field contains a fully-qualified domain name. The
            // first octet of the address field contains the number of octets of name that
            // follow, there is no terminating NUL octet."
            out.push(socks5::DOMAIN);
            out.push(socks_field("host name", host)?);
            out.extend_from_slice(host.as_bytes());
        }
        out.extend_from_slice(&self.target_port.to_be_bytes());
        Ok(out)
    }

    /// SOCKS4a: VN 4, CD 1, DSTPORT, DSTIP 0.0.0.1 (a name follows), USERID, NUL, name, NUL.
    fn socks4a_request(&self) -> Result<Vec<u8>, ProxyError> {
        let mut out = vec![4, 1];
        out.extend_from_slice(&self.target_port.to_be_bytes());
        let user = self.proxy.username.as_deref().unwrap_or("");
        if user.contains('\0') || self.target_host.contains('\0') {
            return Err(ProxyError::InvalidUrl {
                why: "NUL in the SOCKS4a user id or host",
            });
        }
        socks_field("SOCKS user id", user)?;
        match self.target_host.parse::<Ipv4Addr>() {
            Ok(ip) => {
                out.extend_from_slice(&ip.octets());
                out.extend_from_slice(user.as_bytes());
                out.push(0);
            }
            Err(_) => {
                if self.target_host.contains(':') {
                    return Err(ProxyError::InvalidUrl {
                        why: "SOCKS4a cannot reach an IPv6 address",
                    });
                }
                socks_field("host name", &self.target_host)?;
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(user.as_bytes());
                out.push(0);
                out.extend_from_slice(self.target_host.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ProxyUrl {
        ProxyUrl::parse(s).unwrap()
    }

    /// Feeds `reply` one byte at a time; returns the result of the last call.
    fn feed_bytewise(t: &mut Tunnel, reply: &[u8]) -> Result<Option<Vec<u8>>, ProxyError> {
        let mut last = Ok(None);
        for b in reply {
            last = t.receive_data(&[*b]);
            if !matches!(last, Ok(None)) {
                break;
            }
        }
        last
    }

    #[test]
    fn parses_proxy_urls() {
        let p = url("http://user%40x:p%3Ass%20w@Proxy.Example:3128/");
        assert_eq!(p.scheme, ProxyScheme::Http);
        assert_eq!(p.host, "proxy.example");
        assert_eq!(p.port, 3128);
        assert_eq!(p.username.as_deref(), Some("user@x"));
        assert_eq!(p.password.as_deref(), Some("p:ss w"));
        assert_eq!(p.to_string(), "http://proxy.example:3128");
        assert!(!format!("{p:?}").contains("ss"));
        assert_eq!(url("https://h").port, 443);
        assert_eq!(url("http://h").port, 80);
        assert_eq!(url("socks5h://[::1]").port, 1080);
        assert_eq!(url("socks5h://[::1]:9").to_string(), "socks5h://[::1]:9");
        assert!(url("socks5://h").resolves_locally());
        assert!(!url("socks5h://h").resolves_locally());
        assert!(url("https://h").tls());
        assert_eq!(url("http://a:b@c@h").password.as_deref(), Some("b@c"));
        for bad in [
            "h:3128",
            "ftp://h",
            "http://h:0",
            "http://h:99999",
            "http://h/x",
            "http://u:%zz@h",
            "http://:80",
            "http://[::1",
            "http://h:8o",
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(matches!(e, ProxyError::InvalidUrl { .. }), "{bad}: {e:?}");
        }
        // The error never repeats the URL, which may hold a password.
        let e = ProxyUrl::parse("http://u:secret@h:0").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    mod rfc9110_9_3_6 {
        use super::*;

        #[test]
        fn connect_request_and_success() {
            let mut t = Tunnel::new(&url("http://u:p%20w@proxy:3128"), "example.com", 443).unwrap();
            let request = String::from_utf8(t.data_to_send()).unwrap();
            assert_eq!(
                request,
                "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                 Proxy-Authorization: Basic dTpwIHc=\r\n\r\n"
            );
            let reply = b"HTTP/1.1 200 Connection established\r\nContent-Length: 5\r\n\r\n";
            assert_eq!(feed_bytewise(&mut t, reply).unwrap(), Some(vec![]));
            assert!(t.is_established());
            // The Content-Length of a 2xx is ignored: what follows the head is the target's.
            let mut t = Tunnel::new(&url("http://proxy"), "example.com", 443).unwrap();
            let mut reply = reply.to_vec();
            reply.extend_from_slice(b"AB");
            assert_eq!(t.receive_data(&reply).unwrap(), Some(b"AB".to_vec()));
        }

        #[test]
        fn the_rest_after_the_head_is_the_targets() {
            let mut t = Tunnel::new(&url("http://proxy"), "::1", 80).unwrap();
            assert_eq!(
                t.data_to_send(),
                b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"
            );
            let rest = t
                .receive_data(b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 101")
                .unwrap();
            assert_eq!(rest, Some(b"HTTP/1.1 101".to_vec()));
        }

        #[test]
        fn refusal_carries_the_status() {
            let mut t = Tunnel::new(&url("http://proxy:8080"), "h", 80).unwrap();
            let e = t
                .receive_data(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
                )
                .unwrap_err();
            let ProxyError::Status {
                status, headers, ..
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(*status, 407);
            assert_eq!(headers[0].0, "Proxy-Authenticate");
            assert_eq!(
                e.to_string(),
                "proxy http://proxy:8080 refused the tunnel: HTTP 407"
            );
        }

        #[test]
        fn not_http_and_eof() {
            let mut t = Tunnel::new(&url("http://proxy:8080"), "h", 80).unwrap();
            assert!(matches!(
                t.receive_data(b"\x05\x00"),
                Err(ProxyError::Http { .. })
            ));
            let mut t = Tunnel::new(&url("http://proxy:8080"), "h", 80).unwrap();
            t.receive_data(b"HTTP/1.1 200").unwrap();
            let e = t.receive_eof();
            assert_eq!(
                e.to_string(),
                "proxy http://proxy:8080 closed the connection during the proxy handshake \
                 (after 12 bytes)"
            );
        }

        #[test]
        fn bad_credentials_and_hosts_are_refused_before_sending() {
            assert!(Tunnel::new(&url("http://a%3Ab:c@p"), "h", 1).is_err());
            assert!(Tunnel::new(&url("http://a:b%0D%0AX:%20y@p"), "h", 1).is_err());
            assert!(Tunnel::new(&url("http://p"), "h\r\nX: y", 1).is_err());
            assert!(Tunnel::new(&url("http://p"), "h/x", 1).is_err());
        }
    }

    mod rfc1928 {
        use super::*;

        #[test]
        fn no_auth_name_target() {
            let mut t = Tunnel::new(&url("socks5h://p"), "example.com", 8080).unwrap();
            assert_eq!(t.data_to_send(), [5, 1, 0]);
            assert_eq!(t.receive_data(&[5, 0]).unwrap(), None);
            let mut want = vec![5, 1, 0, 3, 11];
            want.extend_from_slice(b"example.com");
            want.extend_from_slice(&[0x1f, 0x90]);
            assert_eq!(t.data_to_send(), want);
            let reply = [5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34];
            assert_eq!(feed_bytewise(&mut t, &reply).unwrap(), Some(vec![]));
            assert!(t.is_established());
        }

        #[test]
        fn address_targets_and_domain_replies() {
            let mut t = Tunnel::new(&url("socks5://p"), "127.0.0.1", 80).unwrap();
            t.data_to_send();
            t.receive_data(&[5, 0]).unwrap();
            assert_eq!(t.data_to_send(), [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
            let mut reply = vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 1];
            reply.extend_from_slice(b"rest");
            assert_eq!(t.receive_data(&reply).unwrap(), Some(b"rest".to_vec()));

            let mut t = Tunnel::new(&url("socks5://p"), "::1", 80).unwrap();
            t.data_to_send();
            t.receive_data(&[5, 0]).unwrap();
            let sent = t.data_to_send();
            assert_eq!(sent[3], 4);
            assert_eq!(sent.len(), 4 + 16 + 2);
            let mut reply = vec![5, 0, 0, 4];
            reply.extend_from_slice(&[0; 18]);
            assert_eq!(feed_bytewise(&mut t, &reply).unwrap(), Some(vec![]));
        }

        #[test]
        fn failure_codes() {
            for code in 1..=9u8 {
                let mut t = Tunnel::new(&url("socks5h://p:1080"), "h", 80).unwrap();
                t.receive_data(&[5, 0]).unwrap();
                let e = t.receive_data(&[5, code, 0, 1]).unwrap_err();
                assert!(
                    matches!(e, ProxyError::SocksReply { code: c, .. } if c == code),
                    "{e:?}"
                );
                assert!(e
                    .to_string()
                    .starts_with("SOCKS proxy socks5h://p:1080 refused"));
            }
        }

        #[test]
        fn no_acceptable_method_and_bad_replies() {
            let mut t = Tunnel::new(&url("socks5h://p"), "h", 80).unwrap();
            assert!(matches!(
                t.receive_data(&[5, 0xff]),
                Err(ProxyError::NoAcceptableMethod {
                    offered_credentials: false,
                    ..
                })
            ));
            let mut t = Tunnel::new(&url("socks5h://p"), "h", 80).unwrap();
            assert!(matches!(
                t.receive_data(&[5, 2]),
                Err(ProxyError::InvalidReply { .. })
            ));
            let mut t = Tunnel::new(&url("socks5h://p"), "h", 80).unwrap();
            assert!(matches!(
                t.receive_data(b"HTTP/1.1 400 Bad"),
                Err(ProxyError::InvalidReply { .. })
            ));
            let mut t = Tunnel::new(&url("socks5h://p"), "h", 80).unwrap();
            t.receive_data(&[5, 0]).unwrap();
            assert!(matches!(
                t.receive_data(&[5, 0, 0, 7]),
                Err(ProxyError::InvalidReply { .. })
            ));
        }

        #[test]
        fn long_names_are_refused() {
            let long = "a".repeat(256);
            assert!(matches!(
                Tunnel::new(&url("socks5h://p"), &long, 80),
                Err(ProxyError::TooLong { len: 256, .. })
            ));
            assert!(Tunnel::new(&url("socks5h://p"), &long[..255], 80).is_ok());
        }
    }

    mod rfc1929 {
        use super::*;

        #[test]
        fn username_password() {
            let mut t = Tunnel::new(&url("socks5h://us%65r:pw@p"), "h", 1).unwrap();
            assert_eq!(t.data_to_send(), [5, 2, 0, 2]);
            t.receive_data(&[5, 2]).unwrap();
            assert_eq!(t.data_to_send(), b"\x01\x04user\x02pw");
            t.receive_data(&[1, 0]).unwrap();
            assert_eq!(t.data_to_send(), [5, 1, 0, 3, 1, b'h', 0, 1]);
        }

        #[test]
        fn refused_credentials() {
            let mut t = Tunnel::new(&url("socks5h://user:pw@p"), "h", 1).unwrap();
            t.receive_data(&[5, 2]).unwrap();
            let e = t.receive_data(&[1, 1]).unwrap_err();
            assert!(
                matches!(e, ProxyError::AuthFailed { status: 1, .. }),
                "{e:?}"
            );
            assert!(!e.to_string().contains("pw"));
        }

        #[test]
        fn the_server_may_skip_authentication() {
            let mut t = Tunnel::new(&url("socks5h://user:pw@p"), "h", 1).unwrap();
            t.receive_data(&[5, 0]).unwrap();
            assert_eq!(t.data_to_send()[..2], [5, 1]);
        }
    }

    mod socks4a {
        use super::*;

        #[test]
        fn request_and_replies() {
            let mut t = Tunnel::new(&url("socks4a://bob@p"), "example.com", 80).unwrap();
            assert_eq!(
                t.data_to_send(),
                b"\x04\x01\x00\x50\x00\x00\x00\x01bob\x00example.com\x00"
            );
            assert_eq!(
                feed_bytewise(&mut t, &[0, 90, 0, 0, 0, 0, 0, 0]).unwrap(),
                Some(vec![])
            );
            let mut t = Tunnel::new(&url("socks4a://p"), "10.0.0.1", 80).unwrap();
            assert_eq!(t.data_to_send(), b"\x04\x01\x00\x50\x0a\x00\x00\x01\x00");
            let e = t.receive_data(&[0, 91, 0, 0, 0, 0, 0, 0]).unwrap_err();
            assert!(matches!(e, ProxyError::SocksReply { code: 91, .. }));
            assert!(Tunnel::new(&url("socks4a://p"), "::1", 80).is_err());
        }
    }
}
