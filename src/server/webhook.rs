//! The admission webhook's HTTPS server: axum over rustls via axum-server, whose configuration
//! can be swapped in place when the certificate rotates.

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

/// Serve `router` over TLS on an already bound listener until `handle` shuts it down (it then
/// stops accepting and lets requests in flight finish).
pub async fn serve(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    router: Router,
    handle: axum_server::Handle<std::net::SocketAddr>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router.into_make_service())
        .await
}
