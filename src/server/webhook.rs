//! The admission webhook's HTTPS server: axum over rustls via axum-server, whose configuration
//! can be swapped in place when the certificate rotates.

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

/// Serve `router` over TLS on an already bound listener until the process ends.
pub async fn serve(listener: std::net::TcpListener, tls: RustlsConfig, router: Router) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)?
        .serve(router.into_make_service())
        .await
}
