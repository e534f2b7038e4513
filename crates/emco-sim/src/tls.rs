//! Serving the simulator over HTTPS (`emco sim --tls`, [`crate::SimOptions::tls`]).
//!
//! One throw-away CA per simulator ([`crate::Sim::tls_ca`], a [`ClusterCa`]) issues a server
//! certificate for the listening address: its IP, the loopback addresses and `localhost`.
//! Kubeconfigs carry that CA as `certificate-authority-data`, so clients verify the server as
//! they verify a real one. The same CA signs every cluster's CertificateSigningRequests, as a
//! real cluster's CA signs both its API server's certificate and its clients'.
//!
//! Connections are accepted in the background and each TLS handshake runs in its own task,
//! bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no one else. ALPN
//! offers `h2` and `http/1.1`. Connections keep their [`ConnectionHandle`], so faults that drop
//! connections work as over plain HTTP. rustls runs on the `ring` provider.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::csr::ClusterCa;
use crate::error::SimError;
use crate::faults::{ConnectionHandle, ConnectionListener, KillableStream};

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 128;

/// The host name the serving certificate names besides its addresses.
pub const SERVING_DNS_NAME: &str = "localhost";

/// The IP addresses the serving certificate for `address` names: the address itself and
/// both loopback addresses (a server on `0.0.0.0` is reached through them too).
pub fn serving_addresses(address: SocketAddr) -> Vec<IpAddr> {
    let mut addresses = vec![address.ip()];
    for loopback in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if !addresses.contains(&loopback) {
            addresses.push(loopback);
        }
    }
    addresses
}

/// A rustls server configuration presenting a certificate from `ca` for `address`.
pub fn server_config(ca: &ClusterCa, address: SocketAddr) -> Result<Arc<ServerConfig>, SimError> {
    let serving = ca.issue_serving_certificate(&serving_addresses(address), &[SERVING_DNS_NAME])?;
    // Client certificates are optional: with one signed by the CA the request is that user's
    // (and RBAC applies, see `rbac`); without, it is the administrator's.
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    let ca_der =
        CertificateDer::from_pem_slice(ca.certificate_pem().as_bytes()).map_err(|error| {
            SimError::TlsConfig(tokio_rustls::rustls::Error::General(error.to_string()))
        })?;
    roots.add(ca_der).map_err(|error| {
        SimError::TlsConfig(tokio_rustls::rustls::Error::General(error.to_string()))
    })?;
    let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| {
            SimError::TlsConfig(tokio_rustls::rustls::Error::General(error.to_string()))
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SimError::TlsConfig)?
        .with_client_cert_verifier(clients)
        .with_single_cert(
            vec![CertificateDer::from(serving.certificate_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving.key_der)),
        )
        .map_err(SimError::TlsConfig)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections (over [`ConnectionListener`]'s killable TCP connections).
#[derive(Debug)]
pub struct TlsConnectionListener {
    local_address: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<KillableStream>, SocketAddr)>,
    acceptor_task: JoinHandle<()>,
}

impl TlsConnectionListener {
    /// Starts accepting on `listener` in the background (needs a Tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local_address = listener.local_addr()?;
        let (sender, handshaken) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor_task = tokio::spawn(accept_connections(
            ConnectionListener::new(listener),
            TlsAcceptor::from(config),
            sender,
        ));
        Ok(Self {
            local_address,
            handshaken,
            acceptor_task,
        })
    }
}

impl Drop for TlsConnectionListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_connections(
    mut listener: ConnectionListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<KillableStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
        let acceptor = acceptor.clone();
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(connection)) => {
                    // Fails only once the server stopped taking connections.
                    let _ = handshaken.send((connection, peer)).await;
                }
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsConnectionListener {
    type Io = TlsStream<KillableStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The acceptor task holds a sender for as long as the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_address)
    }
}

impl Connected<IncomingStream<'_, TlsConnectionListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, TlsConnectionListener>) -> Self {
        let (tcp, tls) = stream.io().get_ref();
        let user = tls
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|certificate| crate::rbac::UserInfo::from_certificate(certificate));
        tcp.handle().with_user(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_addresses_cover_the_listener_and_loopback() {
        let v4: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        assert_eq!(
            serving_addresses(v4),
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        let any: SocketAddr = "0.0.0.0:6443".parse().unwrap();
        assert_eq!(serving_addresses(any).len(), 3);
        let other: SocketAddr = "10.1.2.3:6443".parse().unwrap();
        assert_eq!(serving_addresses(other)[0], other.ip());
    }

    #[test]
    fn configurations_offer_h2_and_http1() {
        let ca = ClusterCa::new("tls").unwrap();
        let config = server_config(&ca, "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
