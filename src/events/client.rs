//! POST one webhook delivery: HTTP/1.1 over TCP, or TLS (rustls with the
//! platform's root certificates) for https. One connection per delivery; no
//! redirect is followed (a 3xx is a failed attempt); the whole exchange has a
//! deadline and at most [`MAX_RESPONSE`] bytes of the answer are read.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The most of a receiver's answer that is read; the rest is dropped with
/// the connection.
pub const MAX_RESPONSE: usize = 16 * 1024;

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: why (timeout, refused, TLS, …).
    Failed(String),
}

/// Sends deliveries. Cheap to share; holds the TLS settings.
pub struct WebhookClient {
    /// Made on the first https delivery: reading the platform's root
    /// certificates costs memory a server with only http webhooks (or none)
    /// need not pay.
    tls: OnceLock<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

impl WebhookClient {
    /// A client whose exchanges (connect, TLS, request, answer) end after
    /// `timeout`.
    pub fn new(timeout: Duration) -> WebhookClient {
        WebhookClient {
            tls: OnceLock::new(),
            timeout,
        }
    }

    fn tls(&self) -> &tokio_rustls::TlsConnector {
        self.tls.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the platform's root certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no root certificates found: https webhooks will fail");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
    }

    /// POST `body` to `url` with `headers` (plus Host, Content-Type and
    /// Content-Length).
    pub async fn post(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: String,
    ) -> PostOutcome {
        match tokio::time::timeout(self.timeout, self.exchange(url, headers, body)).await {
            Ok(Ok(status)) => PostOutcome::Status(status),
            Ok(Err(e)) => PostOutcome::Failed(e),
            Err(_) => PostOutcome::Failed(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<u16, String> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "no port".to_string())?;
        let tcp = match url.host() {
            Some(url::Host::Ipv4(a)) => TcpStream::connect(SocketAddr::from((a, port))).await,
            Some(url::Host::Ipv6(a)) => TcpStream::connect(SocketAddr::from((a, port))).await,
            Some(url::Host::Domain(d)) => TcpStream::connect((d, port)).await,
            None => return Err("no host".into()),
        }
        .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = request(url, headers, body)?;
        if url.scheme() == "https" {
            let name = match url.host() {
                Some(url::Host::Ipv4(a)) => {
                    rustls::pki_types::ServerName::from(std::net::IpAddr::from(a))
                }
                Some(url::Host::Ipv6(a)) => {
                    rustls::pki_types::ServerName::from(std::net::IpAddr::from(a))
                }
                Some(url::Host::Domain(d)) => {
                    rustls::pki_types::ServerName::try_from(d.to_string())
                        .map_err(|e| format!("TLS name: {e}"))?
                }
                None => return Err("no host".into()),
            };
            let tls = self
                .tls()
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            send(tls, request).await
        } else {
            send(tcp, request).await
        }
    }
}

fn request(
    url: &url::Url,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut b = hyper::Request::post(if path.is_empty() { "/" } else { path })
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, body.len())
        .header(
            hyper::header::USER_AGENT,
            concat!("rrnet-radius/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        b = b.header(*name, value);
    }
    b.body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))
}

async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven beside the request and dropped with it.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        // Read (a bounded part of) the answer, so a receiver that writes its
        // status and then waits for us to read is not cut short.
        let mut body = response.into_body();
        let mut read = 0usize;
        while read < MAX_RESPONSE {
            match body.frame().await {
                Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        Ok(status)
    }
    .await;
    driver.abort();
    result
}
