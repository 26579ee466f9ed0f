//! The load generator's HTTP side: one raw HTTP/1.1 connection per caller,
//! straight on hyper, so that the generator costs little next to the server
//! it measures.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use crate::Result;

/// The loopback source address for the `i`th connection. Spreading them
/// over 127.0.0.0/8 keeps every address far from running out of ports, and
/// TIME_WAIT sockets of one scenario from blocking the next.
pub fn source(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i % 60_000).unwrap_or_default();
    Ipv4Addr::new(127, 1 + (i / 250 % 200) as u8, 0, 2 + (i % 250) as u8)
}

/// One keep-alive connection to the server.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(server: SocketAddr, i: usize) -> Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(source(i).into(), 0))?;
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn {
            sender,
            host: server.to_string(),
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        json: Option<String>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if json.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = Full::new(json.map(Bytes::from).unwrap_or_default());
        self.sender.ready().await?;
        let response = self.sender.send_request(request.body(body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request that must answer `expected`.
    pub async fn expect(
        &mut self,
        expected: StatusCode,
        method: Method,
        path: &str,
        json: Option<String>,
    ) -> Result<Bytes> {
        let (status, body) = self.send(method.clone(), path, json).await?;
        if status != expected {
            let body = String::from_utf8_lossy(&body);
            return Err(format!("{method} {path}: {status} instead of {expected}: {body}").into());
        }
        Ok(body)
    }
}

/// The paths and bodies of the scraper's and TesBack's calls.
pub mod calls {
    use serde_json::json;

    pub fn challenge(customer: &str) -> String {
        json!({"customer": customer, "finEntityName": "Bench", "doubleAuthQuestion": "123456"})
            .to_string()
    }

    pub fn token(access: &str) -> String {
        json!({"access": access, "token": "987654"}).to_string()
    }

    pub fn challenge_path(access: &str) -> String {
        format!("/v1/accesses/{access}/challenge")
    }

    pub fn wait_path(access: &str, timeout_secs: u64) -> String {
        format!("/v1/accesses/{access}/token?timeout={timeout_secs}")
    }
}
