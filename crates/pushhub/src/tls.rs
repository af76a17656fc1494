//! TLS termination in pushhub itself (`wss://`, `https://`, TLS on raw TCP), for those who
//! run it without nginx in front.
//!
//! One certificate chain and key serve every listener that has TLS on. Each accepted
//! socket's handshake uses the TLS configuration in force when it arrives, so replacing
//! it ([`Tls::reload`], on SIGHUP) changes what new handshakes present while connections
//! already established keep the session they have: nothing is dropped.
//!
//! The crypto provider is *ring*, chosen explicitly rather than through rustls' process
//! default, so another dependency enabling a second provider cannot make the choice
//! ambiguous (and aws-lc-rs, rustls' default, needs a C toolchain with cmake to build).
//! Outgoing https calls use it too ([`client_config`]): reqwest is built without a
//! provider of its own, so only one crypto library is compiled in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_platform_verifier::Verifier;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::http_conn::Protocols;

/// A server-side TLS connection over TCP: what a TLS listener hands to hyper and to the
/// connection task, and what a WebSocket upgrade is recovered as.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How long a client may take to complete its TLS handshake once its socket is accepted,
/// so a client that connects and says nothing cannot hold a task (and a file descriptor)
/// forever. The same as the HTTP header read deadline that follows it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate chain or key could not be loaded. Each names its file, so the
/// operator knows which one to fix; [`TlsError::field`] says which configuration key it
/// belongs to.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file is not PEM, or holds no certificate.
    #[error("{}: {why}", .path.display())]
    BadCertPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key file is not PEM, or holds no private key.
    #[error("{}: {why}", .path.display())]
    BadKeyPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The first certificate is not a valid X.509 certificate.
    #[error("{}: the first certificate is not a valid X.509 certificate ({source})", .path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The key is of a kind the crypto provider cannot sign with.
    #[error("{}: unsupported private key ({source}); use an RSA, ECDSA (P-256/P-384) or Ed25519 key", .path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The key is not the one the certificate was issued for.
    #[error("the private key in {} does not match the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The provider refused the TLS configuration (does not happen with ring's defaults).
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

impl TlsError {
    /// The `[tls]` key this error is about, `"cert"` or `"key"`, so configuration errors
    /// point at the line to fix.
    pub fn field(&self) -> &'static str {
        match self {
            TlsError::ReadCert { .. }
            | TlsError::BadCertPem { .. }
            | TlsError::BadCertificate { .. }
            | TlsError::Config(_) => "cert",
            TlsError::ReadKey { .. }
            | TlsError::BadKeyPem { .. }
            | TlsError::UnsupportedKey { .. }
            | TlsError::KeyMismatch { .. } => "key",
        }
    }
}

/// The crypto provider every TLS configuration of pushhub uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS for pushhub's own outgoing https calls (app backends, timer and cron callbacks, the
/// CLI): the same provider as the listeners, so one crypto library is built and audited,
/// and HTTP/2 offered before HTTP/1.1. Certificates are checked against the system's root
/// certificates; a system without any (a minimal container image) gets Mozilla's, bundled,
/// and a warning, rather than a server that cannot start or calls backends unverified.
pub fn client_config() -> Result<ClientConfig, rustls::Error> {
    let versions =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let verified = match Verifier::new(provider()) {
        Ok(system) => versions
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(system)),
        Err(why) => {
            tracing::warn!(
                %why,
                "no system root certificates: outgoing https calls trust the bundled Mozilla roots (install ca-certificates to use the system's)"
            );
            versions.with_root_certificates(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            ))
        }
    };
    let mut config = verified.with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What is wrong with a PEM file, in words (the PEM parser's own messages print byte
/// arrays).
fn pem_problem(error: &pem::Error, what: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no {what} found: expected a PEM file"),
        pem::Error::MissingSectionEnd { .. } => {
            format!("not valid PEM: a section has no -----END ...----- line (reading the {what})")
        }
        pem::Error::IllegalSectionStart { .. } => {
            format!("not valid PEM: a malformed -----BEGIN ...----- line (reading the {what})")
        }
        pem::Error::Base64Decode(_) => {
            format!("not valid PEM: a section is not valid base64 (reading the {what})")
        }
        other => format!("not valid PEM ({other}) (reading the {what})"),
    }
}

/// Load a PEM certificate chain (end-entity certificate first, as certbot's
/// `fullchain.pem`) and its PEM private key (PKCS#8, PKCS#1 or SEC1), and check that the
/// key belongs to the certificate. Used by configuration checks, at start and on reload.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let bad_cert = |why: String| TlsError::BadCertPem {
        path: cert.to_owned(),
        why,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(pem_problem(&e, "certificate")))?;
    if chain.is_empty() {
        return Err(bad_cert(
            "no certificate found: expected a PEM file with -----BEGIN CERTIFICATE-----".into(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKeyPem {
        path: key.to_owned(),
        why: match e {
            pem::Error::NoItemsFound => "no private key found: expected a PEM file with -----BEGIN PRIVATE KEY----- (or RSA / EC PRIVATE KEY)".into(),
            e => pem_problem(&e, "private key"),
        },
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(private_key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; the handshake will then tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
        Err(source) => Err(TlsError::BadCertificate {
            path: cert.to_owned(),
            source,
        }),
    }
}

/// SHA-256 of the end-entity certificate, in hex: how the log names a certificate, so an
/// operator can tell that a reload took (`openssl x509 -noout -fingerprint -sha256`).
fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|der| {
            Sha256::digest(der.as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default()
}

/// The TLS configurations built from one certificate and key: HTTP listeners announce
/// `http/1.1` by ALPN, and `h2` before it where they serve the API
/// ([`crate::http_conn::Protocols`]); raw TCP announces nothing, so clients that offer ALPN
/// names of their own are not refused.
struct Current {
    http1: Arc<ServerConfig>,
    http1_and_2: Arc<ServerConfig>,
    raw: Arc<ServerConfig>,
    sha256: String,
}

impl Current {
    fn new(key: CertifiedKey) -> Result<Self, TlsError> {
        let sha256 = fingerprint(&key);
        let key = Arc::new(SingleCertAndKey::from(key));
        let config = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, TlsError> {
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Config)?
                .with_no_client_auth()
                .with_cert_resolver(key.clone());
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        Ok(Self {
            http1: config(Protocols::Http1.alpn())?,
            http1_and_2: config(Protocols::Http1And2.alpn())?,
            raw: config(Vec::new())?,
            sha256,
        })
    }
}

/// TLS for pushhub's listeners: the certificate files, and the configurations built from
/// them that new handshakes use.
///
/// A reload builds new configurations rather than only swapping the certificate inside
/// the old ones, so that it also starts a new session cache: a client cannot resume,
/// after a reload, a session made under the certificate it replaced.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<Current>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("sha256", &self.fingerprint())
            .finish()
    }
}

impl Tls {
    /// Load the certificate chain and key from these files; [`Tls::reload`] reads the same
    /// files again.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(Current::new(load(cert, key)?)?)),
        })
    }

    /// The configurations in force.
    fn current(&self) -> Arc<Current> {
        // A poisoned lock still holds a whole Arc: the value is always valid.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Read the certificate and key files again and, if they load and match, present them
    /// from the next handshake on; connections already established are not touched. On an
    /// error the certificate in force stays. Returns the new certificate's fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let new = Arc::new(Current::new(load(&self.cert, &self.key)?)?);
        let sha256 = new.sha256.clone();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = new;
        Ok(sha256)
    }

    /// SHA-256 of the certificate in force, for the log.
    pub fn fingerprint(&self) -> String {
        self.current().sha256.clone()
    }

    /// The certificate file, for the log.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The TLS handshake of an accepted HTTP listener socket, offering by ALPN the HTTP
    /// versions it speaks, within [`HANDSHAKE_TIMEOUT`].
    pub async fn accept_http(
        &self,
        socket: TcpStream,
        protocols: Protocols,
    ) -> std::io::Result<TlsStream> {
        let current = self.current();
        let config = match protocols {
            Protocols::Http1 => &current.http1,
            Protocols::Http1And2 => &current.http1_and_2,
        };
        handshake(TlsAcceptor::from(config.clone()), socket).await
    }

    /// The TLS handshake of an accepted raw TCP socket, within [`HANDSHAKE_TIMEOUT`].
    pub async fn accept_raw(&self, socket: TcpStream) -> std::io::Result<TlsStream> {
        handshake(TlsAcceptor::from(self.current().raw.clone()), socket).await
    }
}

async fn handshake(acceptor: TlsAcceptor, socket: TcpStream) -> std::io::Result<TlsStream> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// A fresh self-signed certificate and its key, written as `NAME.crt`/`NAME.key`.
        fn self_signed(&self, name: &str) -> (PathBuf, PathBuf) {
            let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            let (cert, key) = (
                self.path(&format!("{name}.crt")),
                self.path(&format!("{name}.key")),
            );
            std::fs::write(&cert, generated.cert.pem()).unwrap();
            std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
            (cert, key)
        }

        fn config(&self, text: &str) -> Result<Config, Vec<(String, String)>> {
            let path = self.path("pushhub.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), [], &Overrides::default())
                .map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
        }
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_everything_else() {
        let files = Files::new();
        let (cert, key) = files.self_signed("a");
        let (_, other_key) = files.self_signed("b");
        assert!(load(&cert, &key).is_ok());
        let garbage = files.path("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let missing = files.path("missing.pem");
        let cases = [
            (load(&missing, &key), "cert", "cannot read"),
            (load(&cert, &missing), "key", "cannot read"),
            (load(&garbage, &key), "cert", "no certificate found"),
            (load(&cert, &garbage), "key", "no private key found"),
            (load(&key, &key), "cert", "no certificate found"),
            (load(&cert, &other_key), "key", "does not match"),
        ];
        for (result, field, text) in cases {
            let error = result.expect_err(text);
            assert_eq!(error.field(), field, "{error}");
            assert!(error.to_string().contains(text), "{error}");
        }
        let broken = files.path("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let error = load(&broken, &key).unwrap_err();
        assert!(error.to_string().contains("END"), "{error}");
        let bogus_der = files.path("bogus.pem");
        std::fs::write(
            &bogus_der,
            "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = load(&bogus_der, &key).unwrap_err();
        assert_eq!(error.field(), "cert", "{error}");
    }

    #[test]
    fn reload_swaps_on_success_and_keeps_the_old_on_failure() {
        let files = Files::new();
        let (cert, key) = files.self_signed("live");
        let tls = Tls::load(&cert, &key).unwrap();
        let first = tls.fingerprint();
        assert_eq!(first.len(), 64);
        let (next_cert, next_key) = files.self_signed("next");
        std::fs::rename(&next_cert, &cert).unwrap();
        // Certificate replaced, key not yet: refused, the old pair stays.
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(tls.fingerprint(), first);
        std::fs::rename(&next_key, &key).unwrap();
        let second = tls.reload().unwrap();
        assert_ne!(second, first);
        assert_eq!(tls.fingerprint(), second);
    }

    #[test]
    fn config_reports_tls_problems_under_their_keys() {
        let files = Files::new();
        let (cert, key) = files.self_signed("a");
        let (_, other_key) = files.self_signed("b");
        let table = |cert: &Path, key: &Path, extra: &str| {
            format!(
                "dynamic_apps = true\n[tls]\ncert = {:?}\nkey = {:?}\n{extra}",
                cert.display().to_string(),
                key.display().to_string()
            )
        };
        let config = files.config(&table(&cert, &key, "")).unwrap();
        let tls = config.tls.expect("tls on");
        assert!(tls.client && !tls.api && !tls.tcp);
        let keys = |errors: Vec<(String, String)>| -> Vec<String> {
            errors.into_iter().map(|(k, _)| k).collect()
        };
        let missing = files.path("missing.pem");
        let errors = files.config(&table(&missing, &key, "")).unwrap_err();
        assert_eq!(keys(errors), ["tls.cert"]);
        let errors = files.config(&table(&cert, &other_key, "")).unwrap_err();
        assert!(errors[0].1.contains("does not match"), "{errors:?}");
        assert_eq!(keys(errors), ["tls.key"]);
        let errors = files
            .config(&table(&cert, &key, "client = false\n"))
            .unwrap_err();
        assert_eq!(keys(errors), ["tls"]);
        let errors = files
            .config(&table(&cert, &key, "tcp = true\n"))
            .unwrap_err();
        assert_eq!(keys(errors), ["tls.tcp"]);
        let errors = files
            .config(&format!(
                "listen = \"127.0.0.1:9000\"\napi_listen = \"127.0.0.1:9000\"\n[apps.a]\nauth = \"none\"\napi_keys = [\"0123456789abcdef\"]\n[tls]\ncert = {:?}\nkey = {:?}\napi = true\nclient = false\n",
                cert.display().to_string(),
                key.display().to_string(),
            ))
            .unwrap_err();
        assert_eq!(keys(errors), ["tls.api"]);
        let errors = files
            .config("dynamic_apps = true\n[tls]\ncert = \"x\"\n")
            .unwrap_err();
        assert!(errors[0].1.contains("key"), "{errors:?}");
    }

    #[test]
    fn tls_paths_come_from_the_environment_too() {
        let files = Files::new();
        let (cert, key) = files.self_signed("a");
        let vars = [
            ("PUSHHUB_TLS_CERT".to_string(), cert.display().to_string()),
            ("PUSHHUB_TLS_KEY".to_string(), key.display().to_string()),
            ("PUSHHUB_TLS_API".to_string(), "true".to_string()),
        ];
        let config = Config::load(None, vars, &Overrides::default()).unwrap();
        let tls = config.tls.expect("tls on");
        assert_eq!((&tls.cert, tls.client, tls.api), (&cert, true, true));
        let vars = [
            ("PUSHHUB_TLS_CERT".to_string(), cert.display().to_string()),
            (
                "PUSHHUB_TLS_KEY".to_string(),
                "/nonexistent/key.pem".to_string(),
            ),
        ];
        let errors = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].location.as_str(), errors[0].key.as_str()),
            ("PUSHHUB_TLS_KEY", "tls.key")
        );
        let vars = [("PUSHHUB_TLS_CLIENT".to_string(), "maybe".to_string())];
        let errors = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .0;
        assert_eq!(errors[0].location, "PUSHHUB_TLS_CLIENT");
    }
}
