//! Certificates and private keys from PEM files. Every error is one line naming the
//! option the file came from, for the user.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn certificates(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {option} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{option} {}: malformed PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{option} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// A CA bundle as a root store.
pub fn roots(path: &Path, option: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, option)? {
        roots
            .add(cert)
            .map_err(|e| format!("{option} {}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path, option: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "cannot read a private key from {option} {}: {e}",
            path.display()
        )
    })
}
