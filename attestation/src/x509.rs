//! X.509 certificates and CRLs as the vendor chains use them.
//!
//! Parsing is delegated to `x509-cert`; what this module adds is the part a
//! verifier must own: signatures are checked over the *original* to-be-signed
//! bytes (sliced from the input, never re-encoded), the accepted algorithms
//! are the few the AMD and Intel chains use and nothing else, and every
//! failure names the certificate it concerns.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use der::asn1::{BitString, ObjectIdentifier};
use der::{Decode, Reader, SliceReader};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;

use crate::error::{Error, Result};

/// Longest certificate or CRL we accept, as a bound before any allocation.
/// The Intel PCK CRL is ~2.6 KiB; a large AMD CRL a few KiB.
pub(crate) const MAX_DER_LEN: usize = 256 * 1024;
/// Most certificates a PEM chain may hold.
pub(crate) const MAX_CHAIN_LEN: usize = 8;

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// The signature algorithms found in the AMD and Intel chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (AMD ARK, ASK, VCEK).
    RsaPssSha384,
    /// ECDSA P-256 with SHA-256, DER signature (Intel PCK chain, CRLs).
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, DER signature.
    EcdsaP384Sha384,
}

/// RSASSA-PSS-params (RFC 8017 A.2.3), decoded to check the hash and salt.
#[derive(der::Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_len: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer: Option<u32>,
}

impl SignatureAlgorithm {
    fn from_identifier(which: &str, alg: &AlgorithmIdentifierOwned) -> Result<Self> {
        let unexpected = |found: String| Error::UnexpectedAlgorithm {
            which: which.to_owned(),
            expected: "RSASSA-PSS/SHA-384 or ECDSA with SHA-256/SHA-384",
            found,
        };
        if alg.oid == OID_ECDSA_SHA256 || alg.oid == OID_ECDSA_SHA384 {
            // RFC 5758 3.2: the parameters field MUST be absent.
            if alg.parameters.is_some() {
                return Err(unexpected(format!("{} with parameters", alg.oid)));
            }
            return Ok(if alg.oid == OID_ECDSA_SHA256 {
                Self::EcdsaP256Sha256
            } else {
                Self::EcdsaP384Sha384
            });
        }
        if alg.oid != OID_RSASSA_PSS {
            return Err(unexpected(alg.oid.to_string()));
        }
        let params = alg
            .parameters
            .as_ref()
            .ok_or_else(|| unexpected("RSASSA-PSS without parameters".into()))?
            .decode_as::<PssParams>()
            .map_err(|e| unexpected(format!("RSASSA-PSS with bad parameters: {e}")))?;
        let hash_ok = params.hash.as_ref().is_some_and(|h| h.oid == OID_SHA384);
        let mgf_ok = params.mask_gen.as_ref().is_some_and(|m| {
            m.oid == OID_MGF1
                && m.parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<AlgorithmIdentifierOwned>().ok())
                    .is_some_and(|h| h.oid == OID_SHA384)
        });
        let salt_ok = params.salt_len == Some(48);
        let trailer_ok = matches!(params.trailer, None | Some(1));
        if hash_ok && mgf_ok && salt_ok && trailer_ok {
            Ok(Self::RsaPssSha384)
        } else {
            Err(unexpected(
                "RSASSA-PSS with parameters other than SHA-384/MGF1-SHA-384/salt 48".into(),
            ))
        }
    }
}

/// A public key in the form aws-lc-rs verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
    /// Uncompressed P-256 point.
    P256(Vec<u8>),
    /// Uncompressed P-384 point.
    P384(Vec<u8>),
}

impl PublicKey {
    /// Extracts the key from a DER SubjectPublicKeyInfo.
    fn from_spki(which: &str, spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<Self> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Malformed {
                which: which.to_owned(),
                detail: "public key BIT STRING has unused bits".into(),
            })?
            .to_vec();
        let alg = &spki.algorithm;
        if alg.oid == OID_RSA_ENCRYPTION || alg.oid == OID_RSASSA_PSS {
            return Ok(Self::Rsa(bits));
        }
        if alg.oid == OID_EC_PUBLIC_KEY {
            let curve = alg
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            let expected_len = match curve {
                Some(c) if c == OID_P256 => 65,
                Some(c) if c == OID_P384 => 97,
                other => {
                    return Err(Error::UnexpectedAlgorithm {
                        which: which.to_owned(),
                        expected: "EC key on P-256 or P-384",
                        found: other.map_or("EC key without named curve".into(), |c| c.to_string()),
                    })
                }
            };
            if bits.len() != expected_len || bits.first() != Some(&0x04) {
                return Err(Error::Malformed {
                    which: which.to_owned(),
                    detail: "EC public key is not an uncompressed point".into(),
                });
            }
            return Ok(if expected_len == 65 {
                Self::P256(bits)
            } else {
                Self::P384(bits)
            });
        }
        Err(Error::UnexpectedAlgorithm {
            which: which.to_owned(),
            expected: "RSA or EC public key",
            found: alg.oid.to_string(),
        })
    }

    /// Checks a DER/PSS signature made with `alg` over `message`.
    pub(crate) fn verify(
        &self,
        alg: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
        what: &str,
    ) -> Result<()> {
        let algorithm: &dyn signature::VerificationAlgorithm = match (alg, self) {
            (SignatureAlgorithm::RsaPssSha384, Self::Rsa(_)) => {
                &signature::RSA_PSS_2048_8192_SHA384
            }
            (SignatureAlgorithm::EcdsaP256Sha256, Self::P256(_)) => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            (SignatureAlgorithm::EcdsaP384Sha384, Self::P384(_)) => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            _ => {
                return Err(Error::UnexpectedAlgorithm {
                    which: what.to_owned(),
                    expected: "a signature algorithm matching the signer's key type",
                    found: format!("{alg:?}"),
                })
            }
        };
        UnparsedPublicKey::new(algorithm, self.bytes())
            .verify(message, signature)
            .map_err(|_| Error::SignatureInvalid {
                what: what.to_owned(),
            })
    }

    /// Checks a raw big-endian `r || s` ECDSA signature (P-256 with SHA-256,
    /// P-384 with SHA-384, by key), the form of quotes, collateral JSON and,
    /// once byte-reversed, SNP reports.
    pub(crate) fn verify_fixed(&self, message: &[u8], signature: &[u8], what: &str) -> Result<()> {
        let (algorithm, point) = match self {
            Self::P256(point) => (&signature::ECDSA_P256_SHA256_FIXED, point),
            Self::P384(point) => (&signature::ECDSA_P384_SHA384_FIXED, point),
            Self::Rsa(_) => {
                return Err(Error::UnexpectedAlgorithm {
                    which: what.to_owned(),
                    expected: "EC public key",
                    found: "RSA".into(),
                })
            }
        };
        UnparsedPublicKey::new(algorithm, point)
            .verify(message, signature)
            .map_err(|_| Error::SignatureInvalid {
                what: what.to_owned(),
            })
    }

    /// A P-256 key from a raw 64-byte `x || y` (the quote's attestation key).
    pub(crate) fn p256_from_raw(xy: &[u8; 64]) -> Self {
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(xy);
        Self::P256(point)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Rsa(b) | Self::P256(b) | Self::P384(b) => b,
        }
    }
}

/// The signed part of a certificate or CRL as it was on the wire, with the
/// algorithm and signature that cover it.
#[derive(Debug, Clone)]
struct Signed {
    tbs: Vec<u8>,
    algorithm: SignatureAlgorithm,
    /// The outer AlgorithmIdentifier, to compare with the signed inner one.
    algorithm_identifier: AlgorithmIdentifierOwned,
    signature: Vec<u8>,
}

impl Signed {
    /// Splits `SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }` without
    /// re-encoding anything, after bounding the input's size.
    fn parse(which: &str, der: &[u8]) -> Result<Self> {
        let malformed = |detail: String| Error::Malformed {
            which: which.to_owned(),
            detail,
        };
        if der.len() > MAX_DER_LEN {
            return Err(malformed(format!(
                "{} bytes exceeds the {MAX_DER_LEN}-byte limit",
                der.len()
            )));
        }
        let mut reader = SliceReader::new(der).map_err(|e| malformed(e.to_string()))?;
        let (tbs, algorithm_identifier, signature) = reader
            .sequence(|r| {
                let tbs = r.tlv_bytes()?;
                let algorithm = AlgorithmIdentifierOwned::decode(r)?;
                let signature = BitString::decode(r)?;
                Ok((tbs, algorithm, signature))
            })
            .map_err(|e| malformed(e.to_string()))?;
        reader.finish(()).map_err(|e| malformed(e.to_string()))?;
        Ok(Self {
            tbs: tbs.to_vec(),
            algorithm: SignatureAlgorithm::from_identifier(which, &algorithm_identifier)?,
            algorithm_identifier,
            signature: signature
                .as_bytes()
                .ok_or_else(|| malformed("signature BIT STRING has unused bits".into()))?
                .to_vec(),
        })
    }

    /// Fails unless the algorithm inside the signed part equals the outer one
    /// (RFC 5280 4.1.1.2, 5.1.1.2).
    fn check_inner_algorithm(&self, which: &str, inner: &AlgorithmIdentifierOwned) -> Result<()> {
        if inner == &self.algorithm_identifier {
            Ok(())
        } else {
            Err(Error::Malformed {
                which: which.to_owned(),
                detail: "inner and outer signature algorithms differ".into(),
            })
        }
    }

    /// Checks the signature with the issuer's key.
    fn verify(&self, issuer_key: &PublicKey, what: &str) -> Result<()> {
        issuer_key.verify(self.algorithm, &self.tbs, &self.signature, what)
    }
}

fn to_datetime(t: Time) -> OffsetDateTime {
    // x509-cert times are 1950..=9999 by construction, so always representable.
    OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A parsed certificate that remembers its exact signed bytes.
#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    label: String,
    signed: Signed,
    public_key: PublicKey,
    parsed: x509_cert::Certificate,
}

impl Certificate {
    /// Parses DER; `label` names the certificate in errors ("VCEK", "PCK leaf").
    pub(crate) fn from_der(label: &str, der: &[u8]) -> Result<Self> {
        let signed = Signed::parse(label, der)?;
        let parsed = x509_cert::Certificate::from_der(der).map_err(|e| Error::Malformed {
            which: label.to_owned(),
            detail: e.to_string(),
        })?;
        signed.check_inner_algorithm(label, &parsed.tbs_certificate.signature)?;
        let public_key =
            PublicKey::from_spki(label, &parsed.tbs_certificate.subject_public_key_info)?;
        Ok(Self {
            label: label.to_owned(),
            signed,
            public_key,
            parsed,
        })
    }

    /// Parses one PEM block or DER, whichever `bytes` is.
    pub(crate) fn from_pem_or_der(label: &str, bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(b"-----BEGIN") {
            let mut chain = parse_pem_chain(label, bytes)?;
            if chain.len() != 1 {
                return Err(Error::ChainLength {
                    which: "certificate file",
                    expected: "exactly one certificate",
                    found: chain.len(),
                });
            }
            let der = chain.remove(0);
            Self::from_der(label, &der)
        } else {
            Self::from_der(label, bytes)
        }
    }

    /// The name used in errors.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The subject public key.
    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: the fingerprint roots are pinned by.
    pub(crate) fn spki_sha256(&self) -> [u8; 32] {
        use der::Encode;
        // Encoding a value we just decoded cannot fail; an empty digest input
        // on the impossible path would simply match no pin.
        let spki = self
            .parsed
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap_or_default();
        Sha256::digest(spki).into()
    }

    /// The subject's common name, or the whole subject if it has none.
    pub(crate) fn subject(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }

    /// The subject's first commonName, if it has one that decodes as a string.
    pub(crate) fn common_name(&self) -> Option<String> {
        const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
        self.parsed
            .tbs_certificate
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == OID_CN)
            .and_then(|atv| {
                atv.value
                    .decode_as::<der::asn1::Utf8StringRef<'_>>()
                    .map(|s| s.as_str().to_owned())
                    .or_else(|_| {
                        atv.value
                            .decode_as::<der::asn1::PrintableStringRef<'_>>()
                            .map(|s| s.as_str().to_owned())
                    })
                    .ok()
            })
    }

    /// The serial number's content bytes.
    pub(crate) fn serial(&self) -> &[u8] {
        self.parsed.tbs_certificate.serial_number.as_bytes()
    }

    /// The issuer name, for messages.
    pub(crate) fn issuer(&self) -> String {
        self.parsed.tbs_certificate.issuer.to_string()
    }

    /// Whether `issuer`'s subject is this certificate's issuer name.
    pub(crate) fn issuer_is(&self, issuer: &Certificate) -> bool {
        self.parsed.tbs_certificate.issuer == issuer.parsed.tbs_certificate.subject
    }

    /// The same certificate under another name in errors.
    pub(crate) fn relabel(mut self, label: &str) -> Self {
        label.clone_into(&mut self.label);
        self
    }

    /// The raw value (inside the OCTET STRING) of extension `oid`, if present.
    pub(crate) fn extension(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.parsed
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// Fails unless `now` is inside the validity period (both bounds inclusive,
    /// as RFC 5280 4.1.2.5 says).
    pub(crate) fn check_validity(&self, now: OffsetDateTime) -> Result<()> {
        let validity = &self.parsed.tbs_certificate.validity;
        let not_before = to_datetime(validity.not_before);
        let not_after = to_datetime(validity.not_after);
        if now < not_before {
            return Err(Error::CertificateNotYetValid {
                which: self.label.clone(),
                not_before,
                now,
            });
        }
        if now > not_after {
            return Err(Error::CertificateExpired {
                which: self.label.clone(),
                not_after,
                now,
            });
        }
        Ok(())
    }

    /// Whether basicConstraints says this is a CA.
    pub(crate) fn is_ca(&self) -> bool {
        self.extension(&OID_BASIC_CONSTRAINTS)
            .and_then(|v| BasicConstraints::from_der(v).ok())
            .is_some_and(|bc| bc.ca)
    }

    /// Checks that `issuer` issued this certificate: names chain, the issuer is
    /// a CA, and its key signed our exact to-be-signed bytes.
    pub(crate) fn verify_issued_by(&self, issuer: &Certificate) -> Result<()> {
        if self.parsed.tbs_certificate.issuer != issuer.parsed.tbs_certificate.subject {
            return Err(Error::IssuerMismatch {
                which: self.label.clone(),
                issuer: self.parsed.tbs_certificate.issuer.to_string(),
                found: issuer.subject(),
            });
        }
        if !issuer.is_ca() {
            return Err(Error::NotCa {
                which: issuer.label.clone(),
            });
        }
        self.signed.verify(
            &issuer.public_key,
            &format!("{} signed by {}", self.label, issuer.label),
        )
    }
}

/// Splits a PEM bundle into DER certificates. Tolerates text between blocks
/// and trailing NUL bytes (DCAP quotes NUL-terminate their embedded chain).
pub(crate) fn parse_pem_chain(label: &str, pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let text = match pem.iter().position(|b| *b == 0) {
        Some(nul) if pem.get(nul..).is_some_and(|t| t.iter().all(|b| *b == 0)) => {
            pem.get(..nul).unwrap_or_default()
        }
        Some(_) => {
            return Err(Error::Malformed {
                which: label.to_owned(),
                detail: "NUL byte inside PEM text".into(),
            })
        }
        None => pem,
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, BEGIN) {
        let after_begin = rest.get(start..).unwrap_or_default();
        let end = find(after_begin, END).ok_or_else(|| Error::Malformed {
            which: label.to_owned(),
            detail: "PEM block without END line".into(),
        })?;
        let block = after_begin.get(..end + END.len()).unwrap_or_default();
        let (_, der) = der::pem::decode_vec(block).map_err(|e| Error::Malformed {
            which: label.to_owned(),
            detail: format!("bad PEM: {e}"),
        })?;
        out.push(der);
        if out.len() > MAX_CHAIN_LEN {
            return Err(Error::ChainLength {
                which: "PEM chain",
                expected: "at most 8 certificates",
                found: out.len(),
            });
        }
        rest = after_begin.get(end + END.len()..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(Error::Malformed {
            which: label.to_owned(),
            detail: "no PEM certificate found".into(),
        });
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed certificate revocation list.
#[derive(Debug, Clone)]
pub(crate) struct Crl {
    label: String,
    signed: Signed,
    parsed: CertificateList,
}

impl Crl {
    /// Parses DER.
    pub(crate) fn from_der(label: &str, der: &[u8]) -> Result<Self> {
        let signed = Signed::parse(label, der)?;
        let parsed = CertificateList::from_der(der).map_err(|e| Error::Malformed {
            which: label.to_owned(),
            detail: e.to_string(),
        })?;
        signed.check_inner_algorithm(label, &parsed.tbs_cert_list.signature)?;
        Ok(Self {
            label: label.to_owned(),
            signed,
            parsed,
        })
    }

    /// Parses a CRL given as DER or PEM.
    pub(crate) fn from_pem_or_der(label: &str, bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(b"-----BEGIN") {
            let (_, der) = der::pem::decode_vec(bytes).map_err(|e| Error::Malformed {
                which: label.to_owned(),
                detail: format!("bad PEM: {e}"),
            })?;
            Self::from_der(label, &der)
        } else {
            Self::from_der(label, bytes)
        }
    }

    /// Checks the issuer's signature and that the CRL is current at `now`. A
    /// CRL without nextUpdate is refused: we could never tell it is stale.
    pub(crate) fn verify(&self, issuer: &Certificate, now: OffsetDateTime) -> Result<()> {
        self.verify_signature(issuer)?;
        self.check_current(now)
    }

    /// Checks only the issuer's name and signature.
    pub(crate) fn verify_signature(&self, issuer: &Certificate) -> Result<()> {
        let tbs = &self.parsed.tbs_cert_list;
        if tbs.issuer != issuer.parsed.tbs_certificate.subject {
            return Err(Error::IssuerMismatch {
                which: self.label.clone(),
                issuer: tbs.issuer.to_string(),
                found: issuer.subject(),
            });
        }
        self.signed.verify(
            &issuer.public_key,
            &format!("{} signed by {}", self.label, issuer.label),
        )
    }

    /// Fails unless thisUpdate <= `now` <= nextUpdate.
    pub(crate) fn check_current(&self, now: OffsetDateTime) -> Result<()> {
        let tbs = &self.parsed.tbs_cert_list;
        let issued = to_datetime(tbs.this_update);
        let next_update = tbs.next_update.map(to_datetime).ok_or(Error::Malformed {
            which: self.label.clone(),
            detail: "CRL has no nextUpdate".into(),
        })?;
        if now < issued || now > next_update {
            return Err(Error::CollateralNotCurrent {
                which: self.label.clone(),
                issued,
                next_update,
                now,
            });
        }
        Ok(())
    }

    /// Fails if `cert`'s serial is listed. Only meaningful after [`Crl::verify`]
    /// against `cert`'s issuer.
    pub(crate) fn check_not_revoked(&self, cert: &Certificate) -> Result<()> {
        self.check_serial_not_revoked(cert.label(), cert.serial())
    }

    fn check_serial_not_revoked(&self, label: &str, serial: &[u8]) -> Result<()> {
        let revoked = self
            .parsed
            .tbs_cert_list
            .revoked_certificates
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.serial_number.as_bytes() == serial);
        if revoked {
            Err(Error::CertificateRevoked {
                which: label.to_owned(),
                serial: hex::encode(serial),
                crl: self.label.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Serial numbers this CRL revokes (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn revoked_serials(&self) -> Vec<Vec<u8>> {
        self.parsed
            .tbs_cert_list
            .revoked_certificates
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILAN_CHAIN: &[u8] = include_bytes!("../tests/vectors/trust/amd/ask_ark_milan.pem");
    const MILAN_VCEK: &[u8] = include_bytes!("../tests/vectors/snp/milan-v2-virtee/vcek.der");

    #[test]
    fn amd_chain_verifies_over_original_bytes() {
        let chain = parse_pem_chain("chain", MILAN_CHAIN).unwrap();
        let ask = Certificate::from_der("ASK", &chain[0]).unwrap();
        let ark = Certificate::from_der("ARK", &chain[1]).unwrap();
        let vcek = Certificate::from_der("VCEK", MILAN_VCEK).unwrap();
        assert_eq!(vcek.serial(), &[0]);
        ark.verify_issued_by(&ark).unwrap();
        ask.verify_issued_by(&ark).unwrap();
        vcek.verify_issued_by(&ask).unwrap();
        assert!(matches!(
            vcek.verify_issued_by(&ark),
            Err(Error::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn pem_chain_tolerates_trailing_nul_but_not_embedded_nul() {
        let mut with_nul = MILAN_CHAIN.to_vec();
        with_nul.extend_from_slice(&[0, 0, 0]);
        assert_eq!(parse_pem_chain("c", &with_nul).unwrap().len(), 2);
        let mut embedded = MILAN_CHAIN.to_vec();
        embedded.insert(10, 0);
        assert!(matches!(
            parse_pem_chain("c", &embedded),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn crl_lookup_finds_listed_serials() {
        let collateral: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../tests/vectors/tdx/v4-phala/collateral.json"
        ))
        .unwrap();
        let der = hex::decode(collateral["pck_crl"].as_str().unwrap()).unwrap();
        let crl = Crl::from_der("PCK CRL", &der).unwrap();
        let serials = crl.revoked_serials();
        assert!(!serials.is_empty());
        assert!(matches!(
            crl.check_serial_not_revoked("x", &serials[0]),
            Err(Error::CertificateRevoked { .. })
        ));
        crl.check_serial_not_revoked("x", &[0x42]).unwrap();
    }
}
