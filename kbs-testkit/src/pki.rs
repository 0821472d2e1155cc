//! Test certificates made with rcgen: a CA, a server certificate for `127.0.0.1` and
//! `localhost`, and a client certificate, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A test CA with a server and a client certificate, as PEM files in one folder.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate.
    pub ca_file: PathBuf,
    /// The server's PKCS#8 private key followed by its certificate (what Kafka's PEM keystore
    /// reads).
    pub server_keystore_file: PathBuf,
    /// The server certificate alone.
    pub server_cert_file: PathBuf,
    /// The server's PKCS#8 private key alone.
    pub server_key_file: PathBuf,
    /// The client certificate (CN `kbs-client`).
    pub client_cert_file: PathBuf,
    /// The client's PKCS#8 private key.
    pub client_key_file: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("self-signed CA")
}

impl Pki {
    /// Makes a new CA and certificates and writes them into `dir` (created if missing).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki folder");
        let ca = ca("kbs test CA");
        let server_key = KeyPair::generate().expect("key");
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let client_key = KeyPair::generate().expect("key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params.distinguished_name.push(DnType::CommonName, "kbs-client");
        let client_cert = client_params.signed_by(&client_key, &ca).expect("client certificate");
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pki file");
            path
        };
        Pki {
            ca_file: write("ca.pem", ca.pem()),
            server_keystore_file: write(
                "server-keystore.pem",
                format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
            ),
            server_cert_file: write("server.pem", server_cert.pem()),
            server_key_file: write("server.key", server_key.serialize_pem()),
            client_cert_file: write("client.pem", client_cert.pem()),
            client_key_file: write("client.key", client_key.serialize_pem()),
        }
    }
}
