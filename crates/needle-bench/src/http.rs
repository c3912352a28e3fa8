//! A minimal HTTP/1.1 keep-alive GET client for the load generator: one request at a time per
//! connection, responses with Content-Length only (what axum sends for JSON). Cheap, so the
//! load generator spends its CPU on load, not on itself. Loopback targets only.
//!
//! The one HTTP client of the benches that is not needle-client (issue 13): `loadgen` must
//! measure at the socket, from a request's first byte written to its response's last byte
//! read, and a general client's pooling, header maps and JSON decoding would be in those
//! figures. Every other call of the benches goes through needle-client (BENCHMARKS.md §4).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Resolved address.
    pub addr: SocketAddr,
    /// The `host:port` text, for the Host header.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

/// Parses an `http://` URL and refuses any address outside the loopback range: the benches
/// never send load anywhere but this machine.
pub fn parse_loopback_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr}: load is only ever sent to loopback (127.0.0.0/8, ::1)"
        ));
    }
    Ok(Url {
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// One keep-alive connection repeating one GET request.
pub struct Conn {
    url: Url,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// A connection (opened lazily) for `GET url` with an optional bearer token.
    pub fn new(url: Url, token: Option<&str>) -> Conn {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
            url.path, url.authority
        );
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        Conn {
            url,
            request: request.into_bytes(),
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.url.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no stream"))
    }

    /// Sends the request and reads the whole response; returns the status and body length.
    /// On any error the connection is dropped and reopened next time.
    pub fn get(&mut self) -> io::Result<(u16, usize)> {
        let r = self.get_inner();
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn get_inner(&mut self) -> io::Result<(u16, usize)> {
        let request = std::mem::take(&mut self.request);
        let w = self.stream()?.write_all(&request);
        self.request = request;
        w?;
        // Headers.
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head =
            std::str::from_utf8(&self.buf[..header_end]).map_err(|_| bad("non-UTF-8 headers"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        let mut close = false;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported by this client"));
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
        let length = length.ok_or_else(|| bad("no Content-Length"))?;
        while self.buf.len() < header_end + length {
            self.fill()?;
        }
        self.buf.drain(..header_end + length);
        if close {
            self.stream = None;
        }
        Ok((status, length))
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream()?.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn refuses_non_loopback_targets() {
        assert!(parse_loopback_url("http://127.0.0.1:7878/v1/status").is_ok());
        assert!(parse_loopback_url("http://[::1]:7878/").is_ok());
        assert!(parse_loopback_url("http://10.0.0.1:7878/v1/status").is_err());
        assert!(parse_loopback_url("https://127.0.0.1:7878/").is_err());
    }

    #[test]
    fn keep_alive_get_reads_whole_responses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut served = 0;
            while served < 3 {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                while let Some(i) = find(&buf, b"\r\n\r\n") {
                    assert!(std::str::from_utf8(&buf[..i])
                        .unwrap()
                        .contains("Authorization: Bearer t0k"));
                    buf.drain(..i + 4);
                    // Split the response over two writes to exercise reassembly.
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
                        .unwrap();
                    s.flush().unwrap();
                    s.write_all(b"llo").unwrap();
                    served += 1;
                }
            }
        });
        let mut c = Conn::new(
            parse_loopback_url(&format!("http://{addr}/x")).unwrap(),
            Some("t0k"),
        );
        for _ in 0..3 {
            assert_eq!(c.get().unwrap(), (200, 5));
        }
        server.join().unwrap();
    }
}
