//! TLS with rustls: the client configuration built from the options, and the engine's TLS
//! layer, driven sans-IO (`read_tls` from a slice, plaintext drained after each
//! `process_new_packets`, `write_tls` into the engine's output buffer). This is the only module
//! that uses rustls.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::buffer::{Filling, InputBuffer};
use crate::error::Error;

pub use crate::options::TlsOptions;

/// ring's provider, preferring AES-128-GCM as browsers do: a TLS 1.3 mandatory suite, and
/// cheaper per byte than AES-256-GCM (rustls servers follow the client's order by default).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// The system trust store, loaded once per process (it honours `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`).
fn system_roots() -> Result<Arc<RootCertStore>, Error> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no certificates found".into());
                return Err(format!("cannot load the system trust store: {why}"));
            }
            Ok(Arc::new(store))
        })
        .clone()
        .map_err(Error::TlsConfig)
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::TlsConfig(format!("cannot read {}: {e}", path.display())))
}

fn pem_certs(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsConfig(format!("invalid PEM in {source}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::TlsConfig(format!(
            "no certificate found in {source}"
        )));
    }
    Ok(certs)
}

/// The files an option set names, read: part of the cache key, so an edited file is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Material {
    ca_file: Option<Vec<u8>>,
    cert_file: Option<Vec<u8>>,
    key_file: Option<Vec<u8>>,
}

impl Material {
    fn read(options: &TlsOptions) -> Result<Material, Error> {
        let read = |p: &Option<PathBuf>| p.as_ref().map(read_file).transpose();
        Ok(Material {
            ca_file: read(&options.ca_file)?,
            cert_file: read(&options.cert_file)?,
            key_file: read(&options.key_file)?,
        })
    }
}

/// Configurations built recently, newest last. Reusing one keeps its TLS session cache, so
/// reconnecting to a server resumes the session instead of verifying its chain again.
type ConfigCache = Vec<((TlsOptions, Material), Arc<ClientConfig>)>;

/// How many distinct configurations are kept.
const CONFIG_CACHE_SIZE: usize = 8;

/// The rustls configuration for `options`, built once per distinct options and file contents
/// (the system trust store is loaded once per process).
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, Error> {
    static CACHE: std::sync::Mutex<ConfigCache> = std::sync::Mutex::new(Vec::new());
    if options.key_file.is_some() && options.cert_file.is_none() {
        return Err(Error::TlsConfig("key_file given without cert_file".into()));
    }
    let key = (options.clone(), Material::read(options)?);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
        let entry = cache.remove(i);
        let config = entry.1.clone();
        cache.push(entry);
        return Ok(config);
    }
    let config = build_config(options, &key.1)?;
    if cache.len() == CONFIG_CACHE_SIZE {
        cache.remove(0);
    }
    cache.push((key, config.clone()));
    Ok(config)
}

fn build_config(options: &TlsOptions, files: &Material) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?;
    let builder = if options.verify {
        let roots = if options.ca_file.is_some() || options.ca_data.is_some() {
            let mut store = RootCertStore::empty();
            if let (Some(path), Some(pem)) = (&options.ca_file, &files.ca_file) {
                for cert in pem_certs(pem, &path.display().to_string())? {
                    store.add(cert)?;
                }
            }
            if let Some(pem) = &options.ca_data {
                for cert in pem_certs(pem, "ca_data")? {
                    store.add(cert)?;
                }
            }
            Arc::new(store)
        } else {
            system_roots()?
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    };
    let mut config = match (&options.cert_file, &options.key_file) {
        (Some(cert_path), key_path) => {
            let cert_pem = files.cert_file.as_deref().unwrap_or_default();
            let chain = pem_certs(cert_pem, &cert_path.display().to_string())?;
            let (key_pem, key_source) = match (key_path, &files.key_file) {
                (Some(p), Some(pem)) => (pem.as_slice(), p.display().to_string()),
                _ => (cert_pem, cert_path.display().to_string()),
            };
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| Error::TlsConfig(format!("no private key in {key_source}: {e}")))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, Some(_)) => {
            return Err(Error::TlsConfig("key_file given without cert_file".into()));
        }
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.clone();
    Ok(Arc::new(config))
}

/// `verify=False`: accept any certificate and name, still checking that the handshake
/// signatures match the certificate presented.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The engine's TLS layer: ciphertext in and out through buffers, never a socket.
pub struct TlsLayer {
    conn: ClientConnection,
}

/// What a chunk of ciphertext produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TlsRead {
    /// The peer sent close_notify: the plaintext stream has ended.
    pub closed: bool,
}

impl TlsLayer {
    /// Starts a client session for `host` (overridden by `server_hostname`).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<TlsLayer, Error> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Error::TlsConfig(format!("invalid server name {host:?}")))?;
        let mut conn = ClientConnection::new(config, name)?;
        // The engine drains every record into its own output buffer right after writing, so
        // rustls' internal cap (which makes `write` stop short at 64 KiB) only gets in the way
        // of framing a large message in one call.
        conn.set_buffer_limit(None);
        Ok(TlsLayer { conn })
    }

    /// Feeds ciphertext; appends the plaintext it yields to `plaintext`.
    pub fn read(&mut self, data: &[u8], plaintext: &mut InputBuffer) -> Result<TlsRead, Error> {
        self.read_direct(data, &mut Filling::new(&mut []), plaintext)
            .map(|(read, _)| read)
    }

    /// Like [`TlsLayer::read`], but the plaintext fills `direct` first (the rest of a large
    /// payload a driver receives into memory of its own) and only what follows goes into
    /// `plaintext`. Returns how many bytes were appended to `direct`.
    pub fn read_direct(
        &mut self,
        mut data: &[u8],
        direct: &mut Filling<'_>,
        plaintext: &mut InputBuffer,
    ) -> Result<(TlsRead, usize), Error> {
        let mut result = TlsRead::default();
        let mut filled = 0;
        while !data.is_empty() {
            self.conn.read_tls(&mut data)?;
            let state = self.conn.process_new_packets()?;
            if state.plaintext_bytes_to_read() > 0 {
                // Borrow rustls' decrypted chunks and copy them out: one copy, no zero-filling.
                let mut reader = self.conn.reader();
                loop {
                    match reader.fill_buf() {
                        Ok([]) => break,
                        Ok(chunk) => {
                            let n = chunk.len();
                            let k = direct.extend(chunk);
                            filled += k;
                            if let Some(to_buffer) = chunk.get(k..).filter(|b| !b.is_empty()) {
                                plaintext.extend(to_buffer);
                            }
                            reader.consume(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if state.peer_has_closed() {
                result.closed = true;
            }
        }
        Ok((result, filled))
    }

    /// Encrypts `plaintext` (buffered by rustls until the handshake is done).
    pub fn write(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        self.conn.writer().write_all(plaintext)?;
        Ok(())
    }

    /// True until the TLS handshake has finished.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Sends close_notify.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// Moves pending ciphertext to `out`.
    pub fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), io::Error> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }

    /// The protocol ALPN chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_config_errors() {
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            verify: true,
            ..Default::default()
        };
        assert!(
            matches!(client_config(&missing), Err(Error::TlsConfig(m)) if m.contains("/nonexistent/ca.pem"))
        );
        let garbage = TlsOptions {
            ca_data: Some(b"not pem".to_vec()),
            verify: true,
            ..Default::default()
        };
        assert!(matches!(client_config(&garbage), Err(Error::TlsConfig(_))));
        let key_only = TlsOptions {
            key_file: Some("/k.pem".into()),
            verify: true,
            ..Default::default()
        };
        assert!(matches!(client_config(&key_only), Err(Error::TlsConfig(_))));
    }

    #[test]
    fn unverified_config_builds() {
        let options = TlsOptions {
            verify: false,
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        };
        let config = client_config(&options).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let mut layer = TlsLayer::new(config, "localhost").unwrap();
        let mut out = Vec::new();
        layer.drain(&mut out).unwrap();
        // A ClientHello record: handshake content type 22, TLS major version 3.
        assert_eq!(&out[..2], &[22, 3]);
    }
}
