//! The verified client certificate's subject, for the configured header.

use rustls::pki_types::CertificateDer;

/// The subject of the leaf certificate as an RFC 4514 string, e.g.
/// `CN=client-1,O=Example`. `None` when there is no certificate or it cannot be read.
pub fn client_subject(chain: Option<&[CertificateDer<'static>]>) -> Option<String> {
    let leaf = chain?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject().to_string();
    // Header values must be visible ASCII; anything else is replaced.
    Some(
        subject
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect(),
    )
}
