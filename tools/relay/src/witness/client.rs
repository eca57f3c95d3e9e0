//! `POST <url>/add-checkpoint` (C2SP tlog-witness) over HTTP/1.1, in the clear or over TLS
//! (native-tls: the MQTT link's TLS stack, no second one). A witness is not trusted: its answer is
//! read under a size cap ([`MAX_ANSWER_BYTES`]) and a timeout, and only its status and body are
//! kept; what the body claims is checked by the caller against the pinned key.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use super::Error;

/// The most of a witness's answer read (head and body): a cosignature line is its name plus 110
/// bytes (docs/witness.md §3), so a witness answering with a few lines needs well under 1 KiB.
pub const MAX_ANSWER_BYTES: usize = 16 << 10;

/// A witness's base URL, parsed: `http://host[:port]/prefix/` or `https://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessUrl {
    tls: bool,
    host: String,
    port: u16,
    /// The request target of `add-checkpoint` (the prefix with `add-checkpoint` appended).
    target: String,
}

impl WitnessUrl {
    /// Parses a witness URL from a policy file.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("the scheme must be http:// or https://"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad("expected scheme://host[:port]/[prefix/]"));
        }
        let default = if tls { 443 } else { 80 };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (authority, default),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("no host"));
        }
        let mut target = if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        if !target.ends_with('/') {
            target.push('/');
        }
        target.push_str("add-checkpoint");
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            target,
        })
    }
}

/// What a witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: its cosignature lines (C2SP tlog-witness: the body is signature lines).
    Cosigned(String),
    /// 409 with `text/x.tlog.size`: the size of the checkpoint it last cosigned, which is not the
    /// old size sent.
    Size(u64),
    /// Anything else: the status and the start of the body (for the operator).
    Refused {
        /// The HTTP status.
        status: u16,
        /// At most 200 characters of the body.
        body: String,
    },
}

/// Sends `body` to the witness at `url` and reads its answer.
pub fn add_checkpoint(
    url: &WitnessUrl,
    body: &str,
    timeout: Duration,
    tls: &native_tls::TlsConnector,
) -> Result<Answer, Error> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| Error::Io(format!("{} resolves to no address", url.host)))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let authority = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.target,
        body.len()
    );
    let raw = if url.tls {
        let mut stream = tls
            .connect(&url.host, tcp)
            .map_err(|e| Error::Tls(e.to_string()))?;
        exchange(&mut stream, request.as_bytes())?
    } else {
        let mut stream = tcp;
        exchange(&mut stream, request.as_bytes())?
    };
    parse(&raw)
}

/// The TLS client of `https://` witnesses: the system's roots, and `ca` (a PEM certificate file)
/// if given (`[witnesses] ca`).
pub fn connector(ca: Option<&std::path::Path>) -> Result<native_tls::TlsConnector, Error> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = ca {
        let pem =
            std::fs::read(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| Error::Tls(format!("{}: not a PEM certificate ({e})", path.display())))?;
        builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| Error::Tls(e.to_string()))
}

/// Writes the request, reads the answer to its end (`Connection: close`) or the cap.
fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> Result<Vec<u8>, Error> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| Error::Io(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::Io(e.to_string()))?;
    if raw.len() > MAX_ANSWER_BYTES {
        return Err(Error::TooLarge);
    }
    Ok(raw)
}

/// An HTTP/1.1 answer: its status, and its body by `Content-Length`, chunks, or to the end.
pub(crate) fn parse(raw: &[u8]) -> Result<Answer, Error> {
    let malformed = |why: &str| Error::Malformed(why.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of the header"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| malformed("a header is not UTF-8"))?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("no HTTP/1.x status line"))?;
    let (mut length, mut chunked, mut content_type) = (None, false, String::new());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed("a header line without a colon"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| malformed("Content-Length"))?,
                );
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => value.clone_into(&mut content_type),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| malformed("the body is shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
    Ok(match status {
        200 => Answer::Cosigned(body),
        // C2SP tlog-witness "add-checkpoint": a 409 with this type carries the witness's size.
        409 if content_type.starts_with("text/x.tlog.size") => Answer::Size(
            body.trim_end_matches('\n')
                .parse()
                .map_err(|_| malformed("a text/x.tlog.size body that is not a size"))?,
        ),
        _ => Answer::Refused {
            status,
            body: body.trim().chars().take(200).collect(),
        },
    })
}

/// A chunked body (RFC 9112 §7.1), within what was read.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, Error> {
    let malformed = || Error::Malformed("a malformed chunked body".into());
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(malformed)?;
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(malformed)?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        // The size is a claim: the chunk must be within what was read.
        let chunk = rest.get(..size).ok_or_else(malformed)?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or_else(malformed)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_host_a_port_and_the_add_checkpoint_target() {
        let u = WitnessUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 8080));
        assert_eq!(u.target, "/add-checkpoint");
        let u = WitnessUrl::parse("https://w.example/tlog").unwrap();
        assert_eq!(
            (u.tls, u.port, u.target.as_str()),
            (true, 443, "/tlog/add-checkpoint")
        );
        let u = WitnessUrl::parse("http://[::1]:9/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        for bad in [
            "ftp://x/",
            "http://",
            "http://u@h/",
            "http://h:x/",
            "http://h/?q",
        ] {
            assert!(WitnessUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_by_status_type_and_length() {
        let ok =
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n\xe2\x80\x94 w x\nextra").unwrap();
        assert_eq!(ok, Answer::Cosigned("— w x\n".into()));
        let size =
            parse(b"HTTP/1.1 409 Conflict\r\ncontent-type: text/x.tlog.size\r\n\r\n42\n").unwrap();
        assert_eq!(size, Answer::Size(42));
        let fork = parse(b"HTTP/1.1 409 Conflict\r\ncontent-type: text/plain\r\n\r\nfork\n");
        assert!(matches!(fork, Ok(Answer::Refused { status: 409, .. })));
        let chunked =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(chunked.unwrap(), Answer::Cosigned("abc".into()));
        // A chunk size larger than what is there is refused, not trusted.
        let lying = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\nab");
        assert!(matches!(lying, Err(Error::Malformed(_))));
        let short = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nab");
        assert!(matches!(short, Err(Error::Malformed(_))));
        assert!(matches!(parse(b"garbage"), Err(Error::Malformed(_))));
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_a_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let Err(Error::Tls(why)) = connector(Some(&missing)) else {
            panic!("a missing CA file was taken");
        };
        assert!(why.contains("missing.pem"), "{why}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let Err(Error::Tls(why)) = connector(Some(&garbage)) else {
            panic!("a CA file without a certificate was taken");
        };
        assert!(
            why.contains("garbage.pem") && why.contains("not a PEM certificate"),
            "{why}"
        );
        assert!(connector(None).is_ok());
    }
}
