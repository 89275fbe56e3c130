//! TLS for the publish proxy: a certificate and key the operator configures (`--tls-cert`,
//! `--tls-key`, PEM), or a self-signed one for the publish domain that the server generates at
//! first start and keeps in the data dir, so it stays the same across restarts (clients that
//! pinned or trusted it keep working).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the proxy's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// Self-signed, generated into `dir` (`cert.pem`, `key.pem`) on first use.
    SelfSigned { dir: PathBuf, domain: String },
}

/// The names a self-signed certificate covers: the domain, its subdomains, and localhost.
pub fn self_signed_names(domain: &str) -> Vec<String> {
    let mut names = vec![domain.to_owned(), format!("*.{domain}")];
    for n in ["localhost", "*.localhost"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_owned());
        }
    }
    names
}

/// Writes a new self-signed certificate and key (mode 0600) into `dir`, unless both exist.
pub fn ensure_self_signed(dir: &Path, domain: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut params = rcgen::CertificateParams::new(self_signed_names(domain))
        .context("the publish domain is not a valid certificate name")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("forkr publish proxy ({domain})"));
    let signing_key = rcgen::KeyPair::generate().context("generating the proxy's TLS key")?;
    let certificate = params.self_signed(&signing_key).context("signing the proxy's certificate")?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join("key.pem.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(signing_key.serialize_pem().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &key)?;
    std::fs::write(&cert, certificate.pem()).with_context(|| format!("writing {}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the publish proxy");
    Ok((cert, key))
}

/// The rustls server configuration for `source` (HTTP/1.1 only).
pub fn server_config(source: &TlsSource) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned { dir, domain } => ensure_self_signed(dir, domain)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading the TLS certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).with_context(|| {
        format!("reading the TLS key {} (expected a PEM private key)", key_path.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("the TLS key {} does not fit the certificate {}", key_path.display(), cert_path.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_are_made_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), "forkr.test").unwrap();
        let first = std::fs::read(&cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        ensure_self_signed(dir.path(), "forkr.test").unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "kept across restarts");
        let source = TlsSource::SelfSigned { dir: dir.path().into(), domain: "forkr.test".into() };
        let config = server_config(&source).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(self_signed_names("localhost"), ["localhost", "*.localhost"]);
    }

    #[test]
    fn bad_files_say_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let source = TlsSource::Files { cert: cert.clone(), key: dir.path().join("missing.pem") };
        let e = format!("{:#}", server_config(&source).unwrap_err());
        assert!(e.contains("c.pem"), "{e}");
    }
}
