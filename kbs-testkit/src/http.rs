//! A one-purpose HTTP server on loopback for the tests' stand-ins of remote services (an OAuth
//! token endpoint, AWS's STS, container and instance metadata endpoints): every request is
//! answered by a function of it, one request per connection, and kept for the test to inspect.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The largest request read; anything longer is cut there.
const MAX_REQUEST_BYTES: usize = 64 << 10;

/// One request as an [`HttpStub`] received it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target, e.g. `/oauth2/token`.
    pub path: String,
    /// The header lines, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl HttpRequest {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running stub; serves on threads until the process ends.
pub struct HttpStub {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl HttpStub {
    /// Listens on a free loopback port and answers each request with `answer(request)`:
    /// a status code and a body (sent as `application/json`).
    pub fn start(answer: impl Fn(&HttpRequest) -> (u16, String) + Send + Sync + 'static) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (Arc::new(answer), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (answer, log) = (answer.clone(), log.clone());
                std::thread::spawn(move || {
                    if let Some(request) = read_request(&stream) {
                        let (status, body) = answer(&request);
                        log.lock().expect("log lock").push(request);
                        let _ = write!(
                            &stream,
                            "HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        HttpStub { addr, requests }
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().expect("log lock").clone()
    }
}

/// Reads a request head and the body its `Content-Length` announces.
fn read_request(mut stream: &TcpStream) -> Option<HttpRequest> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&chunk[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if raw.len() > MAX_REQUEST_BYTES {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: String::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BYTES);
    while raw.len() < head_end + length {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0);
        let Some(n) = n else { break };
        raw.extend_from_slice(&chunk[..n]);
    }
    request.body = String::from_utf8_lossy(&raw[head_end..]).to_string();
    Some(request)
}
