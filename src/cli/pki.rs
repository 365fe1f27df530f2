//! `rrnet-radius pki`: the small certificate authority for RadSec (see [`crate::pki`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::model::CertIdentity;
use crate::store::Store;

#[derive(Args, Debug)]
pub struct PkiArgs {
    /// The PKI directory, where the CA lives [default: `rrnet-radius-pki`
    /// next to the SQLite database file, else in the current directory].
    #[arg(long, global = true, env = "RRNET_PKI_DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// Create the CA (ca.crt, and ca.key with mode 0600). Refuses to replace
    /// an existing one: the certificates it issued would stop working.
    Init,
    /// Issue a client certificate for a RadSec NAS: CN = the NAS name. Writes
    /// N.crt, N.key and N.p12 (the bundle RouterOS imports, with the CA inside)
    /// and prints the bundle's passphrase.
    Issue {
        /// The NAS (from `nas add --name N --radsec-cn N`).
        #[arg(long)]
        nas: String,
        /// Where to write the files [default: the PKI directory].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue the RadSec listener's certificate: HOST.crt (with the CA after it)
    /// and HOST.key, for --tls-cert and --tls-key.
    ServerCert {
        /// The server's name or IP address as routers reach it.
        #[arg(long)]
        name: String,
        /// Where to write the files [default: the PKI directory].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn dir(args: &PkiArgs, database_url: &str) -> PathBuf {
    args.dir
        .clone()
        .unwrap_or_else(|| crate::pki::default_dir(database_url))
}

/// `pki init` and `pki server-cert`: no database needed.
pub fn run_offline(dir: &Path, command: &PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init => {
            let ca = crate::pki::init(dir)?;
            println!("created the RadSec CA");
            println!("  certificate: {}", ca.cert.display());
            println!(
                "  key:         {} (mode 0600; keep it on this server)",
                ca.key.display()
            );
            println!("serve with --tls-client-ca {}", ca.cert.display());
            Ok(())
        }
        PkiCommand::ServerCert { name, out } => {
            let out = out.as_deref().unwrap_or(dir);
            let issued = crate::pki::issue_server(dir, name, out)?;
            println!("issued the RadSec server certificate for {name}");
            println!("  certificate: {}", issued.cert.display());
            println!("  key:         {}", issued.key.display());
            println!(
                "serve with --tls-cert {} --tls-key {}",
                issued.cert.display(),
                issued.key.display()
            );
            Ok(())
        }
        PkiCommand::Issue { .. } => unreachable!("needs the database"),
    }
}

/// `pki issue --nas N`: the NAS must exist; a warning when it is not bound to
/// the certificate's CN (it would be refused at the handshake).
pub async fn issue(
    store: Arc<dyn Store>,
    dir: &Path,
    nas: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let all = store.list_nas().await?;
    let Some(entry) = all.iter().find(|n| n.name == nas) else {
        bail!("no NAS {nas:?}: add it first with `rrnet-radius nas add --name {nas} --radsec-cn {nas}`");
    };
    let out = out.unwrap_or(dir);
    let issued = crate::pki::issue_client(dir, nas, out)?;
    let (p12, passphrase) = issued
        .p12
        .as_ref()
        .expect("client certificates have a bundle");
    println!("issued a RadSec client certificate for NAS {nas} (CN {nas})");
    println!("  certificate: {}", issued.cert.display());
    println!("  key:         {}", issued.key.display());
    println!("  PKCS#12:     {}", p12.display());
    println!("  passphrase:  {passphrase}");
    println!("  sha256:      {}", issued.sha256);
    println!(
        "copy {} to the router, then run `rrnet-radius routeros-script --nas {nas} --tier radsec`",
        p12.file_name().unwrap_or_default().to_string_lossy()
    );
    let bound = match entry.cert_identity() {
        Some(CertIdentity::Name(n)) => n.eq_ignore_ascii_case(nas),
        Some(CertIdentity::Sha256(h)) => *h == issued.sha256,
        None => false,
    };
    if !bound {
        eprintln!(
            "warning: NAS {nas} is not bound to this certificate ({}); RadSec refuses it until it is: \
             `nas remove {nas}` and `nas add --name {nas} --radsec-cn {nas}`",
            entry.address_text()
        );
    }
    Ok(())
}
