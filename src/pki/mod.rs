//! A small certificate authority for RadSec, for operators who have none:
//! `pki init` makes the CA, `pki issue --nas N` a client certificate for one
//! router (CN = the NAS name, also its DNS subject alternative name),
//! `pki server-cert --name HOST` the listener's certificate.
//!
//! Keys are ECDSA P-256 (RouterOS v7 imports them; `prime256v1` in its
//! manual), signatures ECDSA-SHA256. The CA key never leaves the PKI
//! directory and is written with mode 0600; so is every private key and
//! PKCS#12 bundle this module writes. Nothing here shells out to openssl.
//!
//! Files in the PKI directory: `ca.crt`, `ca.key`. Issued files go to `--out`
//! (default: the PKI directory): `N.crt`, `N.key`, `N.p12` (the bundle
//! RouterOS `/certificate import` takes, with the CA inside, encrypted with
//! a printed passphrase) and `HOST.crt`, `HOST.key`.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// Names of the CA files in the PKI directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// How long certificates are valid.
const CA_DAYS: i64 = 20 * 365;
const LEAF_DAYS: i64 = 5 * 365;

/// What went wrong; shown to the operator as is.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Io(String),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(what: &str, path: &Path, e: std::io::Error) -> PkiError {
    PkiError::Io(format!("{what} {}: {e}", path.display()))
}

/// Paths of what `pki init` wrote.
#[derive(Debug)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Paths of an issued certificate and key, and for a router the PKCS#12
/// bundle with its passphrase.
#[derive(Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub p12: Option<(PathBuf, String)>,
    /// SHA-256 of the certificate (DER), lowercase hex: what
    /// `nas add --radsec-fingerprint` takes.
    pub sha256: String,
}

/// Write `data` to a new file at `path` with mode `mode` (Unix). An existing
/// file is replaced only when `replace`.
fn write_file(path: &Path, data: &[u8], mode: u32, replace: bool) -> Result<(), PkiError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options
        .open(path)
        .map_err(|e| io("cannot write", path, e))?;
    // The mode applies to a new file only: an existing one is narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("cannot set the mode of", path, e))?;
    }
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| io("cannot write", path, e))
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create directory", dir, e))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for routers whose clock is a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// A file name part: what `--nas` and `--name` may be, so that no path can be smuggled in.
fn file_stem(name: &str) -> Result<&str, PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(PkiError::Invalid(format!(
            "{name:?}: a certificate name is letters, digits, '-', '_' and '.' (not first)"
        )))
    }
}

/// Create the CA in `dir` (created if missing). Refuses to replace an existing CA:
/// every certificate issued so far would stop verifying.
pub fn init(dir: &Path) -> Result<CaFiles, PkiError> {
    create_dir(dir)?;
    // Only the service user reads the CA's directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot set the mode of", dir, e))?;
    }
    let files = CaFiles {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    if files.cert.exists() || files.key.exists() {
        return Err(PkiError::Invalid(format!(
            "a CA already exists in {}: replacing it would invalidate every certificate it issued",
            dir.display()
        )));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rrnet-radius");
    let mut id = [0u8; 4];
    rand::Rng::fill(&mut rand::thread_rng(), &mut id);
    // A CA per installation: its name says which one, in a router's certificate list.
    dn.push(
        DnType::CommonName,
        format!("rrnet-radius RadSec CA {}", hex::encode(id)),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600, false)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644, false)?;
    Ok(files)
}

/// The CA of `dir`, ready to sign.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    der: Vec<u8>,
}

fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let missing = |p: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            PkiError::Invalid(format!(
                "no CA in {}: create one with `rrnet-radius pki init`",
                dir.display()
            ))
        } else {
            io("cannot read", p, e)
        }
    };
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| missing(&cert_path, e))?;
    let key_pem = std::fs::read_to_string(&key_path).map_err(|e| missing(&key_path, e))?;
    let key = KeyPair::from_pem(&key_pem)?;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .map_err(|e| PkiError::Invalid(format!("{}: {e}", cert_path.display())))?;
    // Signing needs the CA as rcgen sees it: the same name and key, so that
    // what it signs verifies against the certificate on disk.
    let cert = CertificateParams::from_ca_cert_pem(&cert_pem)?.self_signed(&key)?;
    Ok(Ca { cert, key, der })
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

fn leaf(
    ca: &Ca,
    name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rrnet-radius");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_DAYS);
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok((cert, key))
}

fn dns_name(name: &str) -> Result<SanType, PkiError> {
    Ok(SanType::DnsName(name.try_into().map_err(|_| {
        PkiError::Invalid(format!("{name:?} is not a DNS name"))
    })?))
}

/// Issue a client certificate for the router of NAS `nas` (CN and DNS SAN =
/// the NAS name) into `out`: `N.crt`, `N.key` and `N.p12` (with the CA
/// certificate, encrypted with a new random passphrase). Existing files of
/// the same name are replaced (re-issuing is how a router gets a new certificate).
pub fn issue_client(dir: &Path, nas: &str, out: &Path) -> Result<Issued, PkiError> {
    let stem = file_stem(nas)?;
    let ca = load_ca(dir)?;
    create_dir(out)?;
    let (cert, key) = leaf(
        &ca,
        nas,
        vec![dns_name(nas)?],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let passphrase = passphrase();
    let p12 = p12::PFX::new(
        cert.der(),
        &key.serialize_der(),
        Some(&ca.der),
        &passphrase,
        nas,
    )
    .ok_or_else(|| PkiError::Invalid("cannot build the PKCS#12 bundle".into()))?
    .to_der();
    let issued = Issued {
        cert: out.join(format!("{stem}.crt")),
        key: out.join(format!("{stem}.key")),
        p12: Some((out.join(format!("{stem}.p12")), passphrase)),
        sha256: fingerprint(cert.der()),
    };
    write_file(&issued.key, key.serialize_pem().as_bytes(), 0o600, true)?;
    write_file(&issued.cert, cert.pem().as_bytes(), 0o644, true)?;
    if let Some((path, _)) = &issued.p12 {
        write_file(path, &p12, 0o600, true)?;
    }
    Ok(issued)
}

/// Issue the listener's certificate for `host` (a DNS name or an IP address,
/// as routers reach the server) into `out`: `HOST.crt` (with the CA
/// certificate after it, the chain the listener presents) and `HOST.key`.
pub fn issue_server(dir: &Path, host: &str, out: &Path) -> Result<Issued, PkiError> {
    let stem = file_stem(host)?;
    let ca = load_ca(dir)?;
    create_dir(out)?;
    let san = match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => dns_name(host)?,
    };
    let (cert, key) = leaf(&ca, host, vec![san], ExtendedKeyUsagePurpose::ServerAuth)?;
    let issued = Issued {
        cert: out.join(format!("{stem}.crt")),
        key: out.join(format!("{stem}.key")),
        p12: None,
        sha256: fingerprint(cert.der()),
    };
    let ca_pem = std::fs::read_to_string(dir.join(CA_CERT))
        .map_err(|e| io("cannot read", &dir.join(CA_CERT), e))?;
    write_file(&issued.key, key.serialize_pem().as_bytes(), 0o600, true)?;
    write_file(
        &issued.cert,
        format!("{}{ca_pem}", cert.pem()).as_bytes(),
        0o644,
        true,
    )?;
    Ok(issued)
}

/// A passphrase for a PKCS#12 bundle: 20 letters and digits (about 119 bits),
/// typed into RouterOS by hand at worst.
fn passphrase() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
}

/// The default PKI directory: next to an SQLite database file, else
/// `./rrnet-radius-pki`.
pub fn default_dir(database_url: &str) -> PathBuf {
    let name = "rrnet-radius-pki";
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let path = path.split('?').next().unwrap_or(path);
            Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| p.join(name))
                .unwrap_or_else(|| PathBuf::from(name))
        }
        None => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_and_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = init(&pki).unwrap();
        assert!(init(&pki).is_err(), "a second init must not replace the CA");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&ca.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let out = dir.path().join("out");
        let issued = issue_client(&pki, "cafe-1", &out).unwrap();
        let (p12_path, pass) = issued.p12.clone().unwrap();
        let pfx = p12::PFX::parse(&std::fs::read(&p12_path).unwrap()).unwrap();
        assert!(pfx.verify_mac(&pass));
        assert!(!pfx.verify_mac("wrong"));
        let certs = pfx.cert_x509_bags(&pass).unwrap();
        assert_eq!(certs.len(), 2, "the router's certificate and the CA");
        assert_eq!(fingerprint(&certs[0]), issued.sha256);
        assert_eq!(pfx.key_bags(&pass).unwrap().len(), 1);
        let pem = std::fs::read(&issued.cert).unwrap();
        let der: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "cafe-1");
        let ca_pem = std::fs::read(&ca.cert).unwrap();
        let ca_der: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(&ca_pem).unwrap();
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(x509.issuer(), ca_x509.subject());
        x509.verify_signature(Some(ca_x509.public_key())).unwrap();
        assert!(issue_client(&pki, "../evil", &out).is_err());
        assert!(issue_client(&dir.path().join("none"), "x", &out).is_err());
    }

    #[test]
    fn default_dir_is_next_to_the_sqlite_file() {
        assert_eq!(
            default_dir("sqlite:///var/lib/rrnet/rrnet.db"),
            PathBuf::from("/var/lib/rrnet/rrnet-radius-pki")
        );
        assert_eq!(
            default_dir("sqlite://rrnet-radius.db"),
            PathBuf::from("rrnet-radius-pki")
        );
        assert_eq!(
            default_dir("postgres://db/rrnet"),
            PathBuf::from("rrnet-radius-pki")
        );
    }
}
