//! The listener's TLS settings (RFC 6614 §2.3): TLS 1.2 and 1.3, the server's
//! certificate and key, and mutual authentication — every client presents a
//! certificate that chains to `--tls-client-ca`. Files are read at start and
//! again on SIGHUP ([`TlsFiles::reload`]): new connections use the new
//! settings, established ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::server::CertificateNames;

/// Where the listener's certificate, key and client CA come from.
#[derive(Clone, Debug)]
pub struct TlsPaths {
    /// PEM: the server's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM: the CA certificate(s) client certificates must chain to.
    pub client_ca: PathBuf,
}

/// The current TLS settings, swapped whole on reload. std RwLock: never held
/// across an await; readers clone the Arc.
pub struct TlsFiles {
    paths: TlsPaths,
    current: RwLock<Arc<ServerConfig>>,
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{what} {}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// Build the TLS settings from the files of `paths`.
pub fn server_config(paths: &TlsPaths) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&paths.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&paths.key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", paths.key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&paths.client_ca, "--tls-client-ca")? {
        roots
            .add(ca)
            .map_err(|e| anyhow::anyhow!("--tls-client-ca {}: {e}", paths.client_ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("--tls-client-ca {}: {e}", paths.client_ca.display()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "--tls-cert {} and --tls-key {}: {e}",
                paths.cert.display(),
                paths.key.display()
            )
        })?;
    Ok(config)
}

impl TlsFiles {
    /// Read the files; an error names the file and what is wrong with it.
    pub fn load(paths: TlsPaths) -> anyhow::Result<TlsFiles> {
        let config = server_config(&paths)?;
        Ok(TlsFiles {
            paths,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The settings new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().expect("TLS lock poisoned").clone()
    }

    /// Read the files again. On error the previous settings stay in force
    /// (a half-copied certificate must not take the listener down).
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.paths)?;
        *self.current.write().expect("TLS lock poisoned") = Arc::new(config);
        Ok(())
    }
}

/// The names of a client certificate (DER) a NAS entry may be bound to.
/// `None` when it cannot be parsed (rustls verified it, so this does not happen
/// with a certificate that chains to the client CA).
pub fn certificate_names(der: &[u8]) -> Option<CertificateNames> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(CertificateNames {
        common_name,
        dns_names,
        sha256: crate::pki::fingerprint(der),
    })
}
