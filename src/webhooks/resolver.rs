//! The HTTP client deliveries go out through, and the DNS resolver that keeps
//! it off internal networks.
//!
//! Checking a host name at registration is not enough: its DNS may later
//! answer with 127.0.0.1 (rebinding), and a check made before connecting
//! may see another answer than the connection does. So the check lives in
//! the resolver the client connects with: the addresses judged are the
//! addresses dialled.
//!
//! One gap: reqwest never asks the resolver about a URL whose host is an IP
//! literal, and connects to it directly. Those are judged by
//! [`WebhookUrl::parse`](super::WebhookUrl::parse) and, before each
//! delivery, by [`WebhookUrl::check_literal`](super::WebhookUrl::check_literal).

use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use super::url::resolve_allowed;

/// What deliveries say they are, so a receiver can tell them apart in its
/// logs.
pub const USER_AGENT: &str = concat!("twofa-bridge/", env!("CARGO_PKG_VERSION"));

/// A resolver that fails a name when any of its addresses is
/// [`forbidden`](super::forbidden), unless `allow_private` (for development
/// and tests, where receivers listen on loopback).
///
/// The whole answer is refused, not just the bad addresses: reqwest would
/// try the others, and a name that points inward even in part is a name
/// someone is aiming.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            // Port 0: reqwest puts in the URL's port, or the scheme's.
            let addrs = resolve_allowed(name.as_str(), 0, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The client for deliveries: the guarded resolver, no redirects, no proxy,
/// and `timeout` over the whole exchange.
///
/// - No redirects: a `302` to `http://169.254.169.254/` would go around
///   every check, and a receiver that moved should say so by its owner
///   updating the URL. A redirect counts as a failed try.
/// - No proxy: with `HTTPS_PROXY` set, reqwest would resolve the proxy, not
///   the receiver, and the proxy would connect wherever it was told.
/// - `timeout` bounds connecting, sending and reading the answer, so a
///   receiver that stalls holds a worker only that long.
///
/// TLS is rustls with the ring provider, installed here as in
/// [`crate::client::Client::new`] (a no-op once the app has installed it).
/// It is an error, not a panic, when the TLS setup cannot be built.
pub fn delivery_client(
    timeout: Duration,
    allow_private: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver { allow_private })
        .redirect(redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A receiver on loopback that answers one request with a redirect to
    /// the metadata service, and hands back what it was sent.
    async fn redirecting_receiver() -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The headers are enough; the body may come in the same read.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        (port, served)
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_for_loopback() {
        let name: Name = "localhost".parse().unwrap();
        let refused = GuardedResolver::default().resolve(name).await;
        let message = refused.err().unwrap().to_string();
        assert!(message.contains("internal address"), "{message}");

        let name: Name = "localhost".parse().unwrap();
        let allowed = GuardedResolver {
            allow_private: true,
        };
        assert!(
            allowed
                .resolve(name)
                .await
                .unwrap()
                .all(|a| a.ip().is_loopback())
        );
    }

    /// Posts `{}` through a delivery client to a fresh redirecting receiver
    /// at `http://localhost:<port>/hooks`.
    async fn post_to_receiver(
        allow_private: bool,
    ) -> (
        reqwest::Result<reqwest::Response>,
        tokio::task::JoinHandle<String>,
    ) {
        let (port, served) = redirecting_receiver().await;
        let client = delivery_client(Duration::from_secs(5), allow_private).unwrap();
        let answer = client
            .post(format!("http://localhost:{port}/hooks"))
            .body("{}")
            .send()
            .await;
        (answer, served)
    }

    #[tokio::test]
    async fn a_strict_client_does_not_connect_to_loopback() {
        let (answer, served) = post_to_receiver(false).await;
        let refused = answer.unwrap_err();
        let mut source = refused.source();
        let mut found = false;
        while let Some(cause) = source {
            found |= cause.to_string().contains("internal address");
            source = cause.source();
        }
        assert!(found, "{refused:?}");
        served.abort();
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_the_agent_is_named() {
        let (answer, served) = post_to_receiver(true).await;
        let answer = answer.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::FOUND);
        let request = served.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("post /hooks "), "{request}");
        let agent = format!("user-agent: twofa-bridge/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(request.contains(&agent), "{request}");
    }
}
