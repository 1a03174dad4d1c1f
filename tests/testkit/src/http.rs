//! A bare HTTP/1.1 client for protocol-level tests of the test API server.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

async fn send(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &str) -> hyper::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("response within 10s")
        .expect("response")
}

/// One request, whole reply.
pub async fn request(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
    let resp = send(addr, method, path, content_type, body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("body within 10s")
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status, headers, body }
}

/// A watch: yields one decoded event per line.
pub struct Watch {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Watch {
    pub async fn open(addr: SocketAddr, path: &str) -> Watch {
        let resp = send(addr, "GET", path, "application/json", "").await;
        assert_eq!(resp.status(), 200, "watch {path}");
        Watch {
            body: resp.into_body(),
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` if the stream ends or nothing comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=i).collect();
                return serde_json::from_slice(&line).ok();
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_change(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let e = self.next(wait).await?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }
}

/// An HTTPS connection that trusts only `ca_pem`, for talking to a webhook as the API server
/// does. Requests can be sent on it one after another (to show that an open connection
/// survives a certificate rotation).
pub struct TlsConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

/// The handshake failed (untrusted certificate, wrong name) or the connection did not open.
#[derive(Debug)]
pub struct TlsConnectError(pub String);

/// A raw TLS stream to `addr` trusting `ca_pem`, for tests that write a request byte by byte
/// (e.g. one still in flight when the server is told to stop).
pub async fn tls_stream(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsConnectError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |e: &dyn std::fmt::Display| TlsConnectError(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| fail(&e))?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))
}

impl TlsConnection {
    pub async fn open(addr: SocketAddr, ca_pem: &str, server_name: &str) -> Result<TlsConnection, TlsConnectError> {
        let fail = |e: &dyn std::fmt::Display| TlsConnectError(e.to_string());
        let tls = tls_stream(addr, ca_pem, server_name).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(conn);
        Ok(TlsConnection { sender, addr })
    }

    pub async fn request(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let (status, headers, bytes) = self.exchange(method, path, body).await;
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, headers, body }
    }

    /// Status and raw body, not decoded (for load tests, where the client's own JSON parsing
    /// would be measured too).
    pub async fn request_raw(&mut self, method: &str, path: &str, body: &str) -> (u16, Bytes) {
        let (status, _, bytes) = self.exchange(method, path, body).await;
        (status, bytes)
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &str) -> (u16, hyper::HeaderMap, Bytes) {
        // HTTP/1: the previous exchange must be finished before the next request goes out.
        self.sender
            .ready()
            .await
            .expect("connection ready for the next request");
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req))
            .await
            .expect("response within 10s")
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, bytes)
    }
}
