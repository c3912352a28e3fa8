//! HTTPS for the API: the server's certificate (configured, or self-signed on first start,
//! key 0600 in the data directory) and the clients' two ways to trust it: a pinned SHA-256
//! fingerprint of the certificate (what needled logs) or a CA file. rustls on ring.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The self-signed certificate's file in the data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
/// Its private key's file (0600).
pub const KEY_FILE: &str = "tls-key.pem";

/// The server side, ready to serve.
pub struct ServerTls {
    /// rustls' configuration.
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), lower-case hex.
    pub fingerprint: String,
    /// The certificate file.
    pub cert_file: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// SHA-256 of a DER certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// SHA-256 of the first certificate of a PEM file, lower-case hex.
pub fn file_fingerprint(pem: &Path) -> Result<String, String> {
    let first = CertificateDer::pem_file_iter(pem)
        .map_err(|e| format!("{}: {e}", pem.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate", pem.display()))?
        .map_err(|e| format!("{}: {e}", pem.display()))?;
    Ok(fingerprint(&first))
}

/// Writes `bytes` to a new file of mode 0600 (refusing to replace one).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// The certificate and key of `[service.tls]`, or the self-signed pair in the data
/// directory, created on first start for `names` (DNS names and IP addresses).
pub fn server(config: &Config, names: &[String]) -> Result<ServerTls, String> {
    let dir = &config.service.data_dir;
    let tls = &config.service.tls;
    let (cert_file, key_file) = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => (dir.join(c), dir.join(k)),
        _ => {
            let (c, k) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            if !c.exists() && !k.exists() {
                let made = rcgen::generate_simple_self_signed(names.to_vec())
                    .map_err(|e| format!("cannot make a TLS certificate: {e}"))?;
                write_private(&k, made.key_pair.serialize_pem().as_bytes())
                    .map_err(|e| format!("{}: {e}", k.display()))?;
                write_private(&c, made.cert.pem().as_bytes())
                    .map_err(|e| format!("{}: {e}", c.display()))?;
                tracing::info!(cert = %c.display(), ?names, "first start: self-signed TLS certificate created");
            }
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert_file.display()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| format!("TLS certificate {}: no certificate", cert_file.display()))?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| format!("TLS key {}: {e}", key_file.display()))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate {}: {e}", cert_file.display()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(server),
        fingerprint,
        cert_file,
    })
}

/// A client that trusts the certificates of a PEM file (a CA, or the server's own
/// self-signed certificate): needle-client's, which needlectl and the tests use.
pub fn client_with_ca(pem: &Path) -> Result<ClientConfig, String> {
    needle_client::tls::client_with_ca(pem)
}

/// A client that accepts exactly the server certificate whose SHA-256 is `sha256_hex` (as
/// needled logs it; colons and case ignored): needle-client's.
pub fn client_pinned(sha256_hex: &str) -> Result<ClientConfig, String> {
    needle_client::tls::client_pinned(sha256_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = dir.path().to_path_buf();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let a = server(&config, &names).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = server(&config, &names).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert!(client_pinned(&a.fingerprint).is_ok());
        assert!(client_pinned("abc").is_err());
        assert!(client_with_ca(&a.cert_file).is_ok());
    }
}
