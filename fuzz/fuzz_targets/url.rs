//! The URL parser on arbitrary strings.
//!
//! Invariants: a parsed URL prints as a URL that parses to the same value; the host is
//! non-empty and lowercase, the resource starts with `/` and holds no space or control
//! character; the upgrade request built from it is one CRLF-terminated line per field (no
//! header or request-line injection), with the resource on the request line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_ws::handshake::build_request;
use sigil_ws::options::RequestOptions;
use sigil_ws::url::parse_url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = parse_url(text) else {
        return;
    };
    assert!(!url.host.is_empty());
    assert_eq!(url.host, url.host.to_ascii_lowercase());
    assert_ne!(url.port, 0);
    assert!(url.resource.starts_with('/'), "resource {:?}", url.resource);
    assert!(
        !url.resource.chars().any(|c| c.is_control() || c == ' '),
        "resource {:?}",
        url.resource
    );
    let printed = url.to_string();
    match parse_url(&printed) {
        Ok(again) => assert_eq!(again, url, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
    let Ok(request) = build_request(&url, "dGhlIHNhbXBsZSBub25jZQ==", &RequestOptions::default())
    else {
        return;
    };
    assert!(request.ends_with(b"\r\n\r\n"));
    let head = &request[..request.len() - 2];
    let lines: Vec<&[u8]> = head.split(|b| *b == b'\n').collect();
    for line in &lines[..lines.len() - 1] {
        assert_eq!(
            line.last(),
            Some(&b'\r'),
            "a line without CRLF in {request:?}"
        );
        assert!(
            !line[..line.len() - 1].contains(&b'\r'),
            "a bare CR in {request:?}"
        );
    }
    let first = format!("GET {} HTTP/1.1\r", url.resource);
    assert_eq!(lines[0], first.as_bytes());
    let host = format!("Host: {}\r", url.host_header());
    assert!(
        lines.contains(&host.as_bytes()),
        "no Host line in {request:?}"
    );
});
