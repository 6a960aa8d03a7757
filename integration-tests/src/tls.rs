//! TLS for a test stack: a private certificate authority and a server certificate for
//! 127.0.0.1 made with the `openssl` command line, and a TLS endpoint in front of a plain
//! TCP service (RabbitMQ here, whose shared node has no TLS listener).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A private CA and a certificate it signed for `127.0.0.1` and `localhost`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes the CA and the server certificate in `dir` (created if missing).
    pub fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("creating the certificates' folder");
        let files =
            Self { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let extensions = dir.join("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(&[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", path(&ca_key), "-out", path(&files.ca), "-days", "2"],
            &["-subj", "/CN=inferpush test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]);
        openssl(&[
            &["req"],
            &ec[..],
            &["-keyout", path(&files.key), "-out", path(&csr), "-subj", "/CN=127.0.0.1"],
        ]);
        openssl(&[&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&files.ca),
            "-CAkey",
            path(&ca_key),
            "-CAcreateserial",
            "-out",
            path(&files.cert),
            "-days",
            "2",
            "-extfile",
            path(&extensions),
        ]]);
        files
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca).expect("reading the CA certificate")
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn openssl(parts: &[&[&str]]) {
    let args: Vec<&str> = parts.concat();
    let output = Command::new("openssl").args(&args).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A TLS endpoint on a free port that hands each connection, decrypted, to `upstream`.
pub struct TlsTerminator {
    /// The port TLS clients connect to, on 127.0.0.1.
    pub port: u16,
    task: JoinHandle<()>,
}

impl TlsTerminator {
    /// Serves `files`' certificate in front of `upstream`.
    pub async fn start(files: &TlsFiles, upstream: SocketAddr) -> Self {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&files.cert).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the server certificate and key match");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else { return };
                    let Ok(mut service) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
                });
            }
        });
        Self { port, task }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
