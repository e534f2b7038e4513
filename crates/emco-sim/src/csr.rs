//! CertificateSigningRequest signing: each cluster has its own CA (created the first time it
//! signs), which signs approved requests for the built-in `kubernetes.io` signers as the
//! kube-controller-manager does.
//!
//! The certificate's subject, subject alternative names and public key come from
//! `spec.request` (a PEM `CERTIFICATE REQUEST`), its key usages from `spec.usages`, its
//! lifetime from `spec.expirationSeconds` (default one year, at least ten minutes, never past
//! the CA's own expiry); it starts five minutes in the past against clock skew. Denied,
//! failed or unapproved requests stay unsigned, and so do requests for other signers (someone
//! else's controller signs those) or for `kubernetes.io/legacy-unknown`, which nothing signs.
//! A request that cannot be parsed stays approved and unsigned (the real signer retries it).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::meta;

/// Signers whose approved requests the cluster signs.
pub const SIGNERS: [&str; 3] = [
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];

/// Default certificate lifetime (the controller manager's `--cluster-signing-duration`).
const DEFAULT_LIFETIME_SECONDS: i64 = 365 * 24 * 3600;

/// Shortest lifetime a request may ask for.
const MIN_LIFETIME_SECONDS: i64 = 600;

/// How far certificates are backdated.
const BACKDATE_SECONDS: i64 = 300;

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// `spec.request` is not base64 of UTF-8 PEM.
    #[error("spec.request is not a base64-encoded PEM certificate request")]
    Encoding,
    /// `spec.request` is not a valid certificate request.
    #[error("spec.request is not a valid certificate request: {0}")]
    Request(rcgen::Error),
    /// Creating the CA or the certificate failed.
    #[error("signing failed: {0}")]
    Signing(rcgen::Error),
    /// A time outside what certificates can express.
    #[error("certificate validity out of range")]
    Validity,
}

/// A cluster's certificate authority.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    not_after: OffsetDateTime,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ClusterCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn unix_time(seconds: i64) -> Result<OffsetDateTime, SignError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| SignError::Validity)
}

/// Serial numbers: the time in nanoseconds, made unique within the process.
fn next_serial() -> SerialNumber {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    SerialNumber::from(now.max(previous + 1))
}

impl ClusterCa {
    /// A new self-signed CA (ECDSA P-256, ten years) named after `cluster`.
    pub fn new(cluster: &str) -> Result<Self, SignError> {
        let key = KeyPair::generate().map_err(SignError::Signing)?;
        let now = meta::unix_now();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kubernetes");
        name.push(DnType::OrganizationName, format!("emco-sim {cluster}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.not_before = unix_time(now - BACKDATE_SECONDS)?;
        params.not_after = unix_time(now + 10 * DEFAULT_LIFETIME_SECONDS)?;
        params.serial_number = Some(next_serial());
        let certificate = params.self_signed(&key).map_err(SignError::Signing)?;
        Ok(Self {
            not_after: params.not_after,
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Signs the PEM certificate request `request_pem` for `usages` (Kubernetes usage names)
    /// valid for `lifetime_seconds`; returns the certificate, PEM.
    pub fn sign(
        &self,
        request_pem: &str,
        usages: &[&str],
        lifetime_seconds: i64,
    ) -> Result<String, SignError> {
        let mut request =
            CertificateSigningRequestParams::from_pem(request_pem).map_err(SignError::Request)?;
        let now = meta::unix_now();
        let params = &mut request.params;
        params.not_before = unix_time(now - BACKDATE_SECONDS)?;
        params.not_after =
            unix_time(now + lifetime_seconds.max(MIN_LIFETIME_SECONDS))?.min(self.not_after);
        params.serial_number = Some(next_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages.clear();
        params.extended_key_usages.clear();
        for usage in usages {
            match key_usage(usage) {
                Some(Usage::Key(purpose)) => params.key_usages.push(purpose),
                Some(Usage::Extended(purpose)) => params.extended_key_usages.push(purpose),
                None => {}
            }
        }
        let certificate = request
            .signed_by(&self.issuer)
            .map_err(SignError::Signing)?;
        Ok(certificate.pem())
    }
}

/// A TLS server certificate issued by a [`ClusterCa`], with its private key.
pub struct ServingCertificate {
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The private key (ECDSA P-256), PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for ServingCertificate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ServingCertificate")
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Issues a server certificate (`server auth`, a fresh ECDSA P-256 key) for the IP
    /// addresses `ips` and host names `dns_names`, valid for a year (never past the CA).
    pub fn issue_serving_certificate(
        &self,
        ips: &[IpAddr],
        dns_names: &[&str],
    ) -> Result<ServingCertificate, SignError> {
        let key = KeyPair::generate().map_err(SignError::Signing)?;
        let now = meta::unix_now();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = name;
        params.subject_alt_names = ips.iter().copied().map(SanType::IpAddress).collect();
        for dns_name in dns_names {
            let dns_name = (*dns_name).try_into().map_err(SignError::Signing)?;
            params.subject_alt_names.push(SanType::DnsName(dns_name));
        }
        params.not_before = unix_time(now - BACKDATE_SECONDS)?;
        params.not_after = unix_time(now + DEFAULT_LIFETIME_SECONDS)?.min(self.not_after);
        params.serial_number = Some(next_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(SignError::Signing)?;
        Ok(ServingCertificate {
            certificate_der: certificate.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

enum Usage {
    Key(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

/// A `spec.usages` name as an X.509 key usage or extended key usage.
fn key_usage(name: &str) -> Option<Usage> {
    use ExtendedKeyUsagePurpose as Extended;
    use KeyUsagePurpose as Key;
    Some(match name {
        "signing" | "digital signature" => Usage::Key(Key::DigitalSignature),
        "content commitment" => Usage::Key(Key::ContentCommitment),
        "key encipherment" => Usage::Key(Key::KeyEncipherment),
        "key agreement" => Usage::Key(Key::KeyAgreement),
        "data encipherment" => Usage::Key(Key::DataEncipherment),
        "cert sign" => Usage::Key(Key::KeyCertSign),
        "crl sign" => Usage::Key(Key::CrlSign),
        "encipher only" => Usage::Key(Key::EncipherOnly),
        "decipher only" => Usage::Key(Key::DecipherOnly),
        "any" => Usage::Extended(Extended::Any),
        "server auth" => Usage::Extended(Extended::ServerAuth),
        "client auth" => Usage::Extended(Extended::ClientAuth),
        "code signing" => Usage::Extended(Extended::CodeSigning),
        "email protection" | "s/mime" => Usage::Extended(Extended::EmailProtection),
        "timestamping" => Usage::Extended(Extended::TimeStamping),
        "ocsp signing" => Usage::Extended(Extended::OcspSigning),
        "ipsec end system" => Usage::Extended(Extended::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
        "ipsec tunnel" => Usage::Extended(Extended::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
        "ipsec user" => Usage::Extended(Extended::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
        _ => return None,
    })
}

fn has_condition(csr: &Value, kind: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                condition.get("type").and_then(Value::as_str) == Some(kind)
                    && condition.get("status").and_then(Value::as_str) != Some("False")
            })
        })
}

/// Whether the cluster should sign `csr` now: approved, not denied or failed, not yet signed,
/// for one of [`SIGNERS`].
pub fn wants_signing(csr: &Value) -> bool {
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let signed = csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|certificate| !certificate.is_empty());
    SIGNERS.contains(&signer)
        && !signed
        && has_condition(csr, "Approved")
        && !has_condition(csr, "Denied")
        && !has_condition(csr, "Failed")
}

/// The status of `csr` once signed by `ca`: its conditions plus `certificate` (base64 of the
/// PEM, as the API carries bytes).
pub fn signed_status(ca: &ClusterCa, csr: &Value) -> Result<Value, SignError> {
    let request = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(SignError::Encoding)?;
    let usages: Vec<&str> = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let lifetime = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_LIFETIME_SECONDS);
    let certificate = ca.sign(&request, &usages, lifetime)?;
    let mut status = csr
        .get("status")
        .filter(|status| status.is_object())
        .cloned()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    if let Some(map) = status.as_object_mut() {
        map.insert(
            "certificate".into(),
            Value::String(STANDARD.encode(certificate)),
        );
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(common_name: &str) -> (KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "edge-admins");
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, pem)
    }

    #[test]
    fn approved_requests_for_builtin_signers_want_signing() {
        let approved = json!({"type": "Approved", "status": "True"});
        let mut csr = json!({
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client"},
            "status": {"conditions": [approved]},
        });
        assert!(wants_signing(&csr));
        csr["status"]["certificate"] = json!("LS0t");
        assert!(!wants_signing(&csr));
        csr["status"] = json!({"conditions": [approved, {"type": "Denied", "status": "True"}]});
        assert!(!wants_signing(&csr));
        csr["status"] = json!({"conditions": [approved]});
        csr["spec"]["signerName"] = json!("example.com/custom");
        assert!(!wants_signing(&csr));
        csr["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client");
        csr["status"] = json!({});
        assert!(!wants_signing(&csr));
    }

    #[test]
    fn certificates_carry_the_requested_subject_and_usages() {
        let ca = ClusterCa::new("edge-1").unwrap();
        let (key, pem) = request("alice");
        let csr = json!({
            "spec": {
                "request": STANDARD.encode(&pem),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["digital signature", "key encipherment", "client auth"],
                "expirationSeconds": 3600,
            },
            "status": {"conditions": [{"type": "Approved", "status": "True"}]},
        });
        let status = signed_status(&ca, &csr).unwrap();
        assert_eq!(status["conditions"][0]["type"], "Approved");
        let certificate = STANDARD
            .decode(status["certificate"].as_str().unwrap())
            .unwrap();
        let certificate = String::from_utf8(certificate).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(certificate.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        assert_eq!(parsed.subject().to_string(), "CN=alice, O=edge-admins");
        assert_eq!(
            parsed.issuer().to_string(),
            "CN=kubernetes, O=emco-sim edge-1"
        );
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            rcgen::PublicKeyData::der_bytes(&key)
        );
        let lifetime =
            parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
        assert_eq!(lifetime, 3600 + BACKDATE_SECONDS);
        let extended = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(extended.client_auth && !extended.server_auth);
        let (_, ca_pem) =
            x509_parser::pem::parse_x509_pem(ca.certificate_pem().as_bytes()).unwrap();
        let ca_certificate = ca_pem.parse_x509().unwrap();
        parsed
            .verify_signature(Some(ca_certificate.public_key()))
            .unwrap();
    }

    #[test]
    fn serving_certificates_name_their_addresses_and_chain_to_the_ca() {
        let ca = ClusterCa::new("sim").unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let serving = ca
            .issue_serving_certificate(&[loopback], &["localhost"])
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&serving.certificate_der).unwrap();
        let names = &parsed.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            names.general_names,
            vec![
                x509_parser::extensions::GeneralName::IPAddress(&[127, 0, 0, 1]),
                x509_parser::extensions::GeneralName::DNSName("localhost"),
            ]
        );
        let extended = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(extended.server_auth && !extended.client_auth);
        assert!(!parsed.is_ca());
        let (_, ca_pem) =
            x509_parser::pem::parse_x509_pem(ca.certificate_pem().as_bytes()).unwrap();
        let ca_certificate = ca_pem.parse_x509().unwrap();
        assert_eq!(parsed.issuer(), ca_certificate.subject());
        parsed
            .verify_signature(Some(ca_certificate.public_key()))
            .unwrap();
        assert!(parsed.validity().not_after <= ca_certificate.validity().not_after);
        assert!(!serving.key_der.is_empty());
    }

    #[test]
    fn garbage_requests_are_not_signed() {
        let ca = ClusterCa::new("edge-1").unwrap();
        let csr = json!({"spec": {"request": "LS0t", "usages": []}});
        assert!(matches!(
            signed_status(&ca, &csr),
            Err(SignError::Request(_))
        ));
        let csr = json!({"spec": {"request": "%%%"}});
        assert!(matches!(signed_status(&ca, &csr), Err(SignError::Encoding)));
    }
}
