//! Following redirects of the upgrade (RFC 9110 §15.4), sans-IO: which answers are followed,
//! how a `Location` resolves against the current URL (RFC 3986 §5.2), which request headers
//! may go to the next origin, and when a chain ends (a loop, too many hops, a downgrade).
//!
//! Both drivers run the same loop: connect to [`Redirects::url`] with
//! [`Redirects::headers`]; on a refused upgrade ask [`Redirects::follow`] for the next hop.

use crate::error::HandshakeError;
use crate::proxy::{basic_credentials, percent_decode};
use crate::url::{parse_url, UrlError, WebSocketUrl};

/// The statuses that redirect the upgrade: 301, 302, 303, 307, 308 (RFC 9110 §15.4.2-9).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Request headers that carry the user's credentials for the origin they named: they never
/// follow a redirect to another origin.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// Splits `user:password@` off a URL's authority.
///
/// Returns the URL without it and the percent-decoded credentials, if any. The URL that is
/// returned is what `ws.url` shows and logs may print: it never holds the password.
pub fn split_credentials(input: &str) -> Result<(String, Option<(String, String)>), UrlError> {
    let trimmed = input.trim_matches(|c: char| c == ' ' || c == '\t');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Ok((input.to_string(), None));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((input.to_string(), None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s: &str| percent_decode(s).map_err(|_| UrlError::UserInfo);
    let (user, password) = (decode(user)?, decode(password)?);
    // RFC 7617 §2: "a user-id containing a colon character is invalid"; control characters
    // would break the header.
    if user.contains(':') || user.chars().chain(password.chars()).any(char::is_control) {
        return Err(UrlError::UserInfo);
    }
    Ok((format!("{scheme}://{host}{tail}"), Some((user, password))))
}

/// The state of one connection attempt's redirect chain.
#[derive(Debug, Clone)]
pub struct Redirects {
    /// The URL the caller named (without credentials): its origin receives the credentials.
    first: WebSocketUrl,
    /// The URL to connect to now.
    current: WebSocketUrl,
    /// Every URL connected to so far, in order.
    chain: Vec<String>,
    max: usize,
    /// The caller's headers, plus `Authorization` from the URL's user info.
    headers: Vec<(String, String)>,
}

impl Redirects {
    /// Starts a chain at `url`, which may carry `user:password@` (sent as Basic
    /// `Authorization` unless `headers` has one), following at most `max` redirects.
    pub fn new(url: &str, max: usize, headers: &[(String, String)]) -> Result<Redirects, UrlError> {
        let (url, credentials) = split_credentials(url)?;
        let first = parse_url(&url)?;
        let mut headers = headers.to_vec();
        if let Some((user, password)) = credentials {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                headers.push((
                    "Authorization".to_string(),
                    basic_credentials(&user, &password),
                ));
            }
        }
        Ok(Redirects {
            chain: vec![first.to_string()],
            current: first.clone(),
            first,
            max,
            headers,
        })
    }

    /// The URL to connect to (never with credentials).
    pub fn url(&self) -> &WebSocketUrl {
        &self.current
    }

    /// The request headers for [`Redirects::url`]: the credential headers only while it has
    /// the origin (scheme, host, port) of the URL the caller named.
    pub fn headers(&self) -> Vec<(String, String)> {
        if same_origin(&self.current, &self.first) {
            return self.headers.clone();
        }
        self.headers
            .iter()
            .filter(|(n, _)| !CREDENTIAL_HEADERS.iter().any(|c| n.eq_ignore_ascii_case(c)))
            .cloned()
            .collect()
    }

    /// The URLs connected to so far, in order.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The server refused the upgrade with `status`: returns `true` when the chain goes on at
    /// the new [`Redirects::url`], `false` when the refusal is final (not a redirect, or
    /// redirects are off). A redirect that cannot be followed is an error naming the chain.
    pub fn follow(&mut self, status: u16, location: Option<&str>) -> Result<bool, HandshakeError> {
        if !is_redirect(status) || self.max == 0 {
            return Ok(false);
        }
        let location = location.ok_or_else(|| HandshakeError::InvalidRedirect {
            status,
            location: String::new(),
            why: "no Location header".into(),
        })?;
        let next =
            resolve(&self.current, location).map_err(|why| HandshakeError::InvalidRedirect {
                status,
                location: location.to_string(),
                why,
            })?;
        if self.current.secure() && !next.secure() {
            return Err(HandshakeError::InsecureRedirect {
                from: self.current.to_string(),
                to: next.to_string(),
            });
        }
        let shown = next.to_string();
        let looped = self.chain.contains(&shown);
        self.chain.push(shown);
        if looped {
            return Err(HandshakeError::RedirectLoop {
                chain: self.chain.join(" -> "),
            });
        }
        if self.chain.len() > self.max + 1 {
            return Err(HandshakeError::TooManyRedirects {
                max: self.max,
                chain: self.chain.join(" -> "),
            });
        }
        self.current = next;
        Ok(true)
    }
}

/// Scheme, host and port are equal (RFC 6454 §5).
pub fn same_origin(a: &WebSocketUrl, b: &WebSocketUrl) -> bool {
    a.scheme == b.scheme && a.host == b.host && a.port == b.port
}

/// Resolves a `Location` value against the current URL (RFC 3986 §5.2, RFC 9110 §10.2.2:
/// "If the Location value provided in a 3xx (Redirection) response does not have a fragment
/// component, a user agent MUST process the redirection as if the value inherits the fragment
/// component of the URI reference used to generate the target URI" — WebSocket URLs have
/// none, so a fragment is dropped). `http(s)://` maps to `ws(s)://`, as servers that redirect
/// an upgrade often write the HTTP scheme.
fn resolve(base: &WebSocketUrl, location: &str) -> Result<WebSocketUrl, String> {
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    if location.is_empty() {
        return Err("empty Location".into());
    }
    let absolute = if let Some((scheme, rest)) = location.split_once("://").filter(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    }) {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        format!("{scheme}://{rest}")
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", base.scheme.as_str())
    } else {
        let authority = authority_of(base);
        let (base_path, _) = base
            .resource
            .split_once('?')
            .unwrap_or((&base.resource, ""));
        let resource = if location.starts_with('/') {
            remove_dot_segments_in(location)
        } else if let Some(query) = location.strip_prefix('?') {
            format!("{base_path}?{query}")
        } else {
            // RFC 3986 §5.2.3: merge with the base path up to its last "/".
            let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
            remove_dot_segments_in(&format!("{dir}{location}"))
        };
        format!("{}://{authority}{resource}", base.scheme.as_str())
    };
    // User info in a Location is not taken: credentials come from the caller only.
    let (absolute, _) = split_credentials(&absolute).map_err(|e| e.to_string())?;
    parse_url(&absolute).map_err(|e| e.to_string())
}

fn authority_of(url: &WebSocketUrl) -> String {
    let host = if url.is_ipv6() {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    format!("{host}:{}", url.port)
}

/// RFC 3986 §5.2.4 on the path part of `resource` (the query is kept as it is).
fn remove_dot_segments_in(resource: &str) -> String {
    let (path, query) = match resource.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (resource, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = format!("/{}", out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    match query {
        Some(q) => format!("{result}?{q}"),
        None => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(url: &str, max: usize) -> Redirects {
        Redirects::new(url, max, &[]).unwrap()
    }

    #[test]
    fn statuses() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_redirect(s));
        }
        for s in [300, 304, 305, 306, 200, 101, 404] {
            assert!(!is_redirect(s));
        }
    }

    #[test]
    fn resolves_locations() {
        let base = parse_url("ws://h:8000/a/b/c?q=1").unwrap();
        let cases = [
            ("ws://o/x", "ws://o:80/x"),
            ("https://o/x", "wss://o:443/x"),
            ("http://o:1/", "ws://o:1/"),
            ("//o2/y", "ws://o2:80/y"),
            ("/abs?z", "ws://h:8000/abs?z"),
            ("d", "ws://h:8000/a/b/d"),
            ("../d", "ws://h:8000/a/d"),
            ("./", "ws://h:8000/a/b/"),
            ("../../../../x", "ws://h:8000/x"),
            ("?k=v", "ws://h:8000/a/b/c?k=v"),
            ("/x#frag", "ws://h:8000/x"),
            ("ws://user:pw@o/", "ws://o:80/"),
        ];
        for (location, want) in cases {
            assert_eq!(
                resolve(&base, location).unwrap().to_string(),
                want,
                "{location}"
            );
        }
        assert!(resolve(&base, "ftp://o/").is_err());
        assert!(resolve(&base, "").is_err());
        assert!(resolve(&base, "ws://").is_err());
    }

    #[test]
    fn follows_up_to_max_and_reports_the_chain() {
        let mut r = chain("ws://h/0", 2);
        assert!(r.follow(301, Some("/1")).unwrap());
        assert!(r.follow(307, Some("/2")).unwrap());
        assert_eq!(r.url().to_string(), "ws://h:80/2");
        let e = r.follow(308, Some("/3")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "too many redirects (max_redirects=2): ws://h:80/0 -> ws://h:80/1 -> ws://h:80/2 \
             -> ws://h:80/3"
        );
    }

    #[test]
    fn a_loop_names_the_chain() {
        let mut r = chain("ws://h/a", 10);
        assert!(r.follow(302, Some("/b")).unwrap());
        let e = r.follow(302, Some("/a")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "redirect loop: ws://h:80/a -> ws://h:80/b -> ws://h:80/a"
        );
    }

    #[test]
    fn other_statuses_and_max_zero_are_final() {
        assert!(!chain("ws://h/", 10).follow(404, Some("/x")).unwrap());
        assert!(!chain("ws://h/", 0).follow(301, Some("/x")).unwrap());
        assert!(matches!(
            chain("ws://h/", 1).follow(301, None),
            Err(HandshakeError::InvalidRedirect { .. })
        ));
    }

    #[test]
    fn never_from_wss_to_ws() {
        let mut r = chain("wss://h/", 10);
        let e = r.follow(301, Some("ws://h/")).unwrap_err();
        assert!(matches!(e, HandshakeError::InsecureRedirect { .. }));
        assert!(r.follow(301, Some("https://other/")).unwrap());
        let mut r = chain("ws://h/", 10);
        assert!(r.follow(301, Some("wss://h/")).unwrap());
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let mut r = Redirects::new(
            "ws://us%40er:p%3Aw@h/",
            10,
            &[
                ("Cookie".into(), "c=1".into()),
                ("X-Other".into(), "1".into()),
            ],
        )
        .unwrap();
        assert_eq!(r.url().to_string(), "ws://h:80/");
        let names =
            |r: &Redirects| -> Vec<String> { r.headers().into_iter().map(|h| h.0).collect() };
        assert_eq!(names(&r), ["Cookie", "X-Other", "Authorization"]);
        assert_eq!(r.headers()[2].1, basic_credentials("us@er", "p:w"),);
        assert!(r.follow(302, Some("/same")).unwrap());
        assert_eq!(names(&r), ["Cookie", "X-Other", "Authorization"]);
        assert!(r.follow(302, Some("ws://h:81/")).unwrap());
        assert_eq!(names(&r), ["X-Other"]);
        assert!(r.follow(302, Some("ws://other/")).unwrap());
        assert_eq!(names(&r), ["X-Other"]);
    }

    #[test]
    fn an_explicit_authorization_header_wins() {
        let r = Redirects::new(
            "ws://u:p@h/",
            10,
            &[("authorization".into(), "Bearer t".into())],
        )
        .unwrap();
        assert_eq!(
            r.headers(),
            [("authorization".to_string(), "Bearer t".to_string())]
        );
    }

    #[test]
    fn split_credentials_cases() {
        assert_eq!(
            split_credentials("ws://h/x@y").unwrap(),
            ("ws://h/x@y".to_string(), None)
        );
        assert_eq!(
            split_credentials("wss://a:b@h:1/p").unwrap(),
            ("wss://h:1/p".to_string(), Some(("a".into(), "b".into())))
        );
        assert_eq!(
            split_credentials("ws://a@h").unwrap().1,
            Some(("a".into(), String::new()))
        );
        assert!(split_credentials("ws://a%3Ab:c@h").is_err());
        assert!(split_credentials("ws://a:%0A@h").is_err());
    }
}
