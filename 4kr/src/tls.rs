//! TLS for WebSockets to an "insecure" target (`FORKR_INSECURE`, `insecure: true`): deployments with a
//! self-signed certificate. reqwest has `danger_accept_invalid_certs` for HTTP; the WebSocket needs
//! the same through a rustls config whose verifier accepts any certificate. Signatures are still
//! checked, so the handshake itself is sound; only the certificate's identity is not.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_tungstenite::Connector;

use crate::error::{CliError, Result};

/// Accepts any server certificate; checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A WebSocket TLS connector that does not verify the server's certificate.
pub fn insecure_connector() -> Result<Connector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::from(forkr_engine::Error::internal(format!("cannot set up TLS: {e}"))))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;

    /// A throwaway self-signed certificate for `localhost`/127.0.0.1 (test fixture, not a secret).
    const CERT: &[u8] = include_bytes!("../tests/fixtures/selfsigned.crt");
    const KEY: &[u8] = include_bytes!("../tests/fixtures/selfsigned.key");

    /// A one-connection `wss://` server on 127.0.0.1 with the self-signed certificate: it completes the
    /// WebSocket handshake and sends an `EXIT 0` frame. Returns its port.
    pub fn wss_server() -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from_pem_slice(CERT).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let config = config.clone();
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                    let tls = rustls::StreamOwned::new(conn, tcp);
                    let Ok(mut ws) = tokio_tungstenite::tungstenite::accept(tls) else { return };
                    let exit = vec![forkr_engine::api::ws::EXIT, b'0'];
                    let _ = ws.send(tokio_tungstenite::tungstenite::Message::Binary(exit.into()));
                    let _ = ws.close(None);
                    let _ = ws.flush();
                });
            }
        });
        port
    }
}
