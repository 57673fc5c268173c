//! The HTTP/1.1 response head: status line, header fields, limits and the search for its end
//! (RFC 9112). The WebSocket upgrade rules that read it live in `handshake.rs`.

pub use crate::error::HttpError;

/// Largest response header block accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most response header lines accepted.
pub const MAX_HEADERS: usize = 256;

/// How every HTTP/1.x response begins.
const HTTP_NAME: &[u8] = b"HTTP/";

/// How many of the first bytes a non-HTTP answer reports.
pub const MAX_FIRST_BYTES: usize = 32;

/// RFC 9110 §5.6.2 token characters.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses `HTTP/1.1 101 Switching Protocols` into its status code.
pub fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let bad = || HttpError::InvalidStatusLine(line.to_string());
    let line = line.trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().ok_or_else(bad)?;
    // RFC 6455 §4.1: the response is an HTTP/1.1 (or later) response.
    if !(version == "HTTP/1.1" || version.starts_with("HTTP/1.") && version.len() == 8) {
        return Err(bad());
    }
    let code = parts.next().ok_or_else(bad)?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok(status)
}

/// A parsed HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Every value of a header, case-insensitively, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Header lines packed into one allocation, for what a connection keeps after its handshake.
///
/// Each line is stored as `name:value\n`. The packing is lossless: a field name is a token,
/// which cannot contain `:` (RFC 9110 §5.1), and no line can contain `\n`, which ends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedHeaders {
    packed: Box<str>,
}

impl PackedHeaders {
    /// Packs header pairs whose names contain no `:` and neither part a `\n`.
    pub fn new(headers: &[(String, String)]) -> PackedHeaders {
        let mut packed = String::with_capacity(
            headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 2)
                .sum(),
        );
        for (name, value) in headers {
            debug_assert!(!name.contains([':', '\n']) && !value.contains('\n'));
            packed.push_str(name);
            packed.push(':');
            packed.push_str(value);
            packed.push('\n');
        }
        PackedHeaders {
            packed: packed.into_boxed_str(),
        }
    }

    /// The `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.packed
            .split_terminator('\n')
            .map(|line| line.split_once(':').unwrap_or((line, "")))
    }
}

/// The first value of `name` in `headers`, case-insensitively.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Finds the end of a response head that arrives in pieces, looking at each byte once.
///
/// Give [`HeadReader::poll`] every byte received so far, the same prefix plus new bytes on each
/// call: the search for the empty line resumes where it stopped, so a head that arrives one byte
/// at a time costs time linear in its length (a fresh search per read would be quadratic, up to
/// [`MAX_HEADER_BYTES`]).
#[derive(Debug, Clone, Default)]
pub struct HeadReader {
    /// How far the search for the empty line has looked: no line before this offset is the
    /// empty line. At most [`MAX_HEADER_BYTES`].
    scanned: usize,
    /// The response began with `HTTP/`.
    began_as_http: bool,
    /// Bytes the search has looked at, over all calls: what the linearity test counts.
    #[cfg(test)]
    examined: usize,
}

impl HeadReader {
    /// A reader that has seen nothing yet.
    pub fn new() -> HeadReader {
        HeadReader::default()
    }

    /// Looks for the end of the head in `buf`, every byte received so far.
    ///
    /// Returns `Ok(None)` while the head is incomplete, or the response and the number of bytes
    /// it used: bytes past that are the start of the WebSocket stream (or the body of a refusal).
    /// Polling again with the same bytes gives the same answer. A `buf` shorter than what was
    /// already searched is taken as a new response, searched from its start.
    pub fn poll(&mut self, buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
        if buf.len() < self.scanned {
            *self = HeadReader::default();
        }
        if !self.began_as_http {
            // RFC 9112 §4: a response begins with its status line, whose HTTP-version begins
            // with `HTTP/` (case-sensitive, §2.3). Another protocol's bytes are refused as soon
            // as one differs: the head of an answer that is not HTTP may never end.
            if buf.iter().zip(HTTP_NAME).any(|(got, want)| got != want) {
                return Err(HttpError::NotHttp {
                    first_bytes: buf.iter().take(MAX_FIRST_BYTES).copied().collect(),
                });
            }
            self.began_as_http = buf.len() >= HTTP_NAME.len();
        }
        // A head that ends past the limit is refused, so the search never looks further.
        let window = buf.get(..MAX_HEADER_BYTES).unwrap_or(buf);
        let Some(end) = self.search(window) else {
            if buf.len() > MAX_HEADER_BYTES {
                return Err(HttpError::HeadersTooLarge {
                    limit: MAX_HEADER_BYTES,
                });
            }
            return Ok(None);
        };
        let head = window.get(..end).unwrap_or(window);
        parse_head(head).map(|response| Some((response, end)))
    }

    /// The offset just past the empty line that ends the head, searching `window` from where
    /// the previous search stopped.
    fn search(&mut self, window: &[u8]) -> Option<usize> {
        let start = self.scanned;
        let mut from = start;
        let found = loop {
            let Some(pos) = window
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            else {
                break None;
            };
            let nl = from + pos;
            // An empty line is "\n" or "\r\n" right after the previous line's "\n". The
            // bytes before `nl` were received earlier or now: a line end split across two
            // reads is found all the same.
            let before = window.get(..nl).unwrap_or_default();
            if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
                break Some(nl);
            }
            from = nl + 1;
        };
        // Stop on the final "\n" itself so that the next poll finds the same end again.
        self.scanned = found.unwrap_or(window.len());
        #[cfg(test)]
        {
            self.examined += found.map_or(window.len(), |nl| nl + 1) - start;
        }
        found.map(|nl| nl + 1)
    }
}

/// Parses a complete response head: the status line, then header lines up to the empty line.
fn parse_head(head: &[u8]) -> Result<Response, HttpError> {
    // Header bytes are ISO-8859-1 at worst (RFC 9110 §5.5); decode lossily for messages.
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        // RFC 9112 §5.2: obsolete line folding is rejected.
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::InvalidHeaderLine(line.to_string()));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::InvalidHeaderLine(line.to_string()))?;
        if !is_token(name) {
            return Err(HttpError::InvalidHeaderLine(line.to_string()));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::TooManyHeaders { limit: MAX_HEADERS });
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    Ok(Response { status, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_headers_round_trip() {
        let pairs: Vec<(String, String)> = [
            ("Upgrade", "websocket"),
            ("X-Time", "12:30:00"),
            ("Empty", ""),
            ("Upgrade", "again"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let packed = PackedHeaders::new(&pairs);
        let back: Vec<(String, String)> = packed
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(back, pairs);
        assert_eq!(PackedHeaders::new(&[]).iter().count(), 0);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line("HTTP/1.1 101 Switching Protocols").unwrap(),
            101
        );
        assert_eq!(
            parse_status_line("HTTP/1.1 404 Not Found\r\n").unwrap(),
            404
        );
        assert_eq!(parse_status_line("HTTP/1.1 200").unwrap(), 200);
        for bad in [
            "",
            "HTTP/1.1",
            "HTTP/1.1 1O1 x",
            "HTTP/1.1 1010 x",
            "HTTP/2 101 x",
            "FOO 101 x",
            "HTTP/1.1 099 x",
        ] {
            assert!(
                matches!(parse_status_line(bad), Err(HttpError::InvalidStatusLine(_))),
                "{bad:?}"
            );
        }
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\r\n";

    #[test]
    fn head_read_keeps_trailing_bytes() {
        let mut buf = HEAD.to_vec();
        buf.extend_from_slice(b"\x81\x02hi");
        let (resp, used) = HeadReader::new().poll(&buf).unwrap().unwrap();
        assert_eq!(used, HEAD.len());
        assert_eq!(&buf[used..], b"\x81\x02hi");
        assert_eq!(resp.status, 101);
        assert_eq!(resp.header("upgrade"), Some("WebSocket"));
    }

    #[test]
    fn head_read_needs_the_whole_head() {
        for cut in 0..HEAD.len() {
            assert_eq!(
                HeadReader::new().poll(&HEAD[..cut]).unwrap(),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn head_read_accepts_bare_lf_and_multi_values() {
        let buf = b"HTTP/1.1 101 OK\nUpgrade: websocket\nX-A: 1\nx-a: 2\n\nrest";
        let (resp, used) = HeadReader::new().poll(buf).unwrap().unwrap();
        assert_eq!(&buf[used..], b"rest");
        assert_eq!(resp.header_values("X-A").collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn head_read_limits() {
        let mut big = b"HTTP/1.1 101 OK\r\n".to_vec();
        while big.len() <= MAX_HEADER_BYTES {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            HeadReader::new().poll(&big),
            Err(HttpError::HeadersTooLarge { .. })
        ));
        let mut many = b"HTTP/1.1 101 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            HeadReader::new().poll(&many),
            Err(HttpError::TooManyHeaders { .. })
        ));
        for bad in [
            &b"HTTP/1.1 101 OK\r\nno colon\r\n\r\n"[..],
            b"HTTP/1.1 101 OK\r\nBad Name: v\r\n\r\n",
            b"HTTP/1.1 101 OK\r\nA: b\r\n folded\r\n\r\n",
        ] {
            assert!(matches!(
                HeadReader::new().poll(bad),
                Err(HttpError::InvalidHeaderLine(_))
            ));
        }
        assert!(matches!(
            HeadReader::new().poll(b"HTTP/9 101 OK\r\n\r\n"),
            Err(HttpError::InvalidStatusLine(_))
        ));
    }

    #[test]
    fn bytes_that_cannot_begin_a_response_are_refused_at_once() {
        for buf in [
            &b"S"[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"http/1.1 101 OK\r\n",
            b"HTTPS",
            b"\x15\x03\x01\x00\x02\x02\x32",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(
                HeadReader::new().poll(buf),
                Err(HttpError::NotHttp {
                    first_bytes: buf.to_vec()
                }),
                "{buf:?}"
            );
        }
        for buf in [&b""[..], b"H", b"HTTP", b"HTTP/", b"HTTP/1.1 101"] {
            assert_eq!(HeadReader::new().poll(buf), Ok(None), "{buf:?}");
        }
        let long = [b'x'; 100];
        assert_eq!(
            HeadReader::new().poll(&long),
            Err(HttpError::NotHttp {
                first_bytes: long[..MAX_FIRST_BYTES].to_vec()
            })
        );
    }

    #[test]
    fn a_non_http_answer_is_shown_as_python_bytes() {
        let message = |buf: &[u8]| HeadReader::new().poll(buf).unwrap_err().to_string();
        assert_eq!(
            message(b"\x15\x03\x01\x00\x02\x02\x32"),
            "invalid status line: server answered with non-HTTP data \
             b'\\x15\\x03\\x01\\x00\\x02\\x022': this looks like TLS; use a wss:// URL"
        );
        assert!(message(b"\x16\x03\x03\x00\x7a\x02").ends_with("use a wss:// URL"));
        assert_eq!(
            message(b"SSH-2.0-OpenSSH\r\n"),
            "invalid status line: server answered with non-HTTP data b'SSH-2.0-OpenSSH\\r\\n'"
        );
        assert!(!message(b"\x16").contains("TLS"));
    }

    /// Polls one reader with `buf` cut at each of `cuts`; every answer must be the one a fresh
    /// reader gives for the same bytes.
    fn assert_resumes(buf: &[u8], cuts: &[usize]) {
        let mut reader = HeadReader::new();
        for &cut in cuts {
            let fresh = HeadReader::new().poll(&buf[..cut]);
            assert_eq!(reader.poll(&buf[..cut]), fresh, "{buf:?} cut at {cuts:?}");
        }
    }

    #[test]
    fn every_split_gives_the_answer_of_a_single_read() {
        let heads: [&[u8]; 6] = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: a\r\n\r\n\x81\x00",
            b"HTTP/1.1 101 OK\nUpgrade: websocket\n\nrest",
            b"HTTP/1.1 101 OK\r\nA: b\r\n\n",
            b"HTTP/1.1 101 OK\r\nBad Name: v\r\n\r\n",
            b"HTTP/1.1 1O1 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
        ];
        for buf in heads {
            let whole = HeadReader::new().poll(buf);
            assert_ne!(whole, Ok(None));
            for i in 0..=buf.len() {
                for j in i..=buf.len() {
                    assert_resumes(buf, &[i, j, buf.len(), buf.len()]);
                }
            }
            assert_resumes(buf, &(0..=buf.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_head_fed_one_byte_at_a_time_is_searched_once() {
        let mut buf = b"HTTP/1.1 101 OK\r\n".to_vec();
        while buf.len() < 60 * 1024 {
            buf.extend_from_slice(b"X-Filler: ");
            buf.extend_from_slice(&[b'a'; 300]);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        let mut reader = HeadReader::new();
        let mut scanned = 0;
        for n in 0..buf.len() {
            assert_eq!(reader.poll(&buf[..n]), Ok(None));
            assert!(reader.scanned >= scanned, "the search went back at {n}");
            scanned = reader.scanned;
        }
        let (response, used) = reader.poll(&buf).unwrap().unwrap();
        assert_eq!((response.status, used), (101, buf.len()));
        // Each byte looked at once; a search from the start on every read would look at about
        // len² / 2 bytes (1.9 × 10⁹ here).
        assert!(reader.examined <= buf.len(), "{}", reader.examined);

        // Without an end, the search stops at the limit, and the byte past it is refused.
        buf.truncate(buf.len() - 2);
        buf.resize(MAX_HEADER_BYTES + 1, b'a');
        let mut reader = HeadReader::new();
        for n in 0..=MAX_HEADER_BYTES {
            assert_eq!(reader.poll(&buf[..n]), Ok(None));
        }
        assert_eq!(
            reader.poll(&buf),
            Err(HttpError::HeadersTooLarge {
                limit: MAX_HEADER_BYTES
            })
        );
        assert!(reader.examined <= MAX_HEADER_BYTES, "{}", reader.examined);
    }
}
