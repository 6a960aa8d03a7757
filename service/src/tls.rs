//! Trust for TLS to the services: RabbitMQ (`amqps://`), Redis (`rediss://`) and the Pusher
//! server (`PUSHER_SCHEME=https`) are checked against the system's certificate authorities,
//! plus those of `INFERPUSH_TLS_CA_FILE` (a private CA, as most clusters have). All TLS is
//! rustls on the `ring` provider, installed once per process by [`install_crypto_provider`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use lapin::tcp::OwnedTLSConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The TLS settings both binaries take.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// A PEM file of certificate authorities to trust for TLS to RabbitMQ (`amqps://`), Redis
    /// (`rediss://`) and the Pusher server (`PUSHER_SCHEME=https`), besides the system's
    /// (for Redis, instead of them).
    #[arg(long = "tls-ca-file", env = "INFERPUSH_TLS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The authorities to trust: read and checked now, so a wrong file stops the start.
    pub fn trusted(&self) -> anyhow::Result<TrustedCas> {
        let Some(path) = &self.ca_file else { return Ok(TrustedCas::default()) };
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading INFERPUSH_TLS_CA_FILE {}", path.display()))?;
        TrustedCas::from_pem(pem).with_context(|| format!("INFERPUSH_TLS_CA_FILE {}", path.display()))
    }
}

/// Certificate authorities to trust besides the system's, as PEM.
#[derive(Debug, Clone, Default)]
pub struct TrustedCas {
    pem: Option<Arc<str>>,
}

impl TrustedCas {
    /// The authorities in `pem`, which must hold at least one certificate, all readable.
    pub fn from_pem(pem: String) -> anyhow::Result<Self> {
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("holds an unreadable certificate: {e}"))?;
        anyhow::ensure!(!certificates.is_empty(), "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)");
        Ok(Self { pem: Some(pem.into()) })
    }

    /// The PEM text, when authorities were given.
    pub fn pem(&self) -> Option<&str> {
        self.pem.as_deref()
    }

    /// A rustls client configuration trusting the system's authorities and these (for
    /// clients that take one, such as MQTT's).
    pub fn rustls_client(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &self.pem {
            for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(certificate.map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?)?;
            }
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "no certificate authority to trust: install the system's (Debian's ca-certificates) or set INFERPUSH_TLS_CA_FILE"
        );
        Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    }

    /// lapin's TLS settings: these authorities added to the system's.
    pub fn amqp(&self) -> OwnedTLSConfig {
        OwnedTLSConfig { identity: None, cert_chain: self.pem.as_deref().map(str::to_owned) }
    }
}

/// Makes rustls' `ring` provider the process default (reqwest and redis take the default);
/// a second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused_and_no_file_trusts_the_system_only() {
        assert!(TrustedCas::from_pem("not a certificate".into()).is_err());
        let none = TlsArgs::default().trusted().unwrap();
        assert!(none.pem().is_none() && none.amqp().cert_chain.is_none());
        let missing = TlsArgs { ca_file: Some("/nonexistent/ca.pem".into()) }.trusted().unwrap_err();
        assert!(format!("{missing:#}").contains("INFERPUSH_TLS_CA_FILE"), "{missing:#}");
    }
}
