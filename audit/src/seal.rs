//! What the host that stores the log must not read: each record's sensitive
//! fields are encrypted to the auditor's public key, and patient references
//! appear in clear only as keyed pseudonyms.
//!
//! At each start the enclave runs one HPKE (RFC 9180) encapsulation to the
//! auditor's X25519 key — DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export
//! only — with `info` naming the epoch's audit signing key, and writes the
//! encapsulated key into the start record. Both sides export three keys
//! from that context:
//!
//! - the record key: AES-256-GCM over each record's sealed fields, nonce =
//!   the record's sequence number, associated data = sequence number and
//!   enclave identity, so a sealed blob cannot be moved to another record;
//! - the pseudonym key: HMAC-SHA256 of a patient reference, so records about
//!   one patient link within an epoch while the host learns nothing;
//! - the digest key: HMAC-SHA256 of prompt and answer, so an auditor can
//!   check a transcript against its record without the host being able to
//!   confirm a guessed answer.
//!
//! One encapsulation per epoch keeps the per-record cost to one AES-GCM
//! call; the auditor opens one encapsulation per epoch, not per record.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hmac;
use hpke::aead::ExportOnlyAead;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use rand_core::{OsRng, TryRngCore as _};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::AuditError;

const INFO_LABEL: &[u8] = b"cloister/audit/v1 epoch\0";
const RECORD_AAD_LABEL: &[u8] = b"cloister/audit/v1 record\0";

type Kem = X25519HkdfSha256;

/// The auditor's X25519 public key, as the measured enclave configuration
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditorPublicKey(pub [u8; 32]);

impl AuditorPublicKey {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, AuditError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
            AuditError::Key(
                "an auditor public key is 64 hex digits (cloister audit keygen prints it)".into(),
            )
        })?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&key)
            .map_err(|_| AuditError::Key("not an X25519 public key".into()))?;
        Ok(Self(key))
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The auditor's private key. Only the auditor holds it; neither the host
/// nor the enclave ever does.
pub struct AuditorKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: AuditorPublicKey,
}

impl core::fmt::Debug for AuditorKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuditorKey")
            .field("public", &self.public.to_hex())
            .field("private", &"<never printed>")
            .finish()
    }
}

/// The first line of an auditor key file.
const KEY_FILE_HEADER: &str = "# cloister auditor key (X25519, HPKE); keep this file secret";

impl AuditorKey {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, AuditError> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|_| AuditError::Key("no randomness".into()))?;
        let (private, public) = Kem::derive_keypair(&seed);
        seed.zeroize();
        let public = AuditorPublicKey(public.to_bytes().into());
        Ok(Self { private, public })
    }

    /// The public half, for the enclave configuration.
    pub fn public(&self) -> AuditorPublicKey {
        self.public
    }

    /// The key file's text: a comment, the private key, the public key.
    pub fn to_file_text(&self) -> String {
        format!(
            "{KEY_FILE_HEADER}\nprivate = \"{}\"\npublic = \"{}\"\n",
            hex::encode(self.private.to_bytes()),
            self.public.to_hex()
        )
    }

    /// Reads what [`to_file_text`](Self::to_file_text) wrote, checking
    /// that the two halves belong together.
    pub fn from_file_text(text: &str) -> Result<Self, AuditError> {
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .ok_or_else(|| AuditError::Key(format!("the key file has no {name} line")))
        };
        let mut private = [0u8; 32];
        hex::decode_to_slice(field("private")?, &mut private)
            .map_err(|_| AuditError::Key("the private key is not 64 hex digits".into()))?;
        let key = <Kem as hpke::Kem>::PrivateKey::from_bytes(&private)
            .map_err(|_| AuditError::Key("not an X25519 private key".into()));
        private.zeroize();
        let key = key?;
        let public = AuditorPublicKey(Kem::sk_to_pk(&key).to_bytes().into());
        if public != AuditorPublicKey::from_hex(&field("public")?)? {
            return Err(AuditError::Key(
                "the key file's public key does not belong to its private key".into(),
            ));
        }
        Ok(Self {
            private: key,
            public,
        })
    }

    /// Opens the encapsulation in an epoch's start record.
    pub fn open_epoch(&self, enc: &[u8], audit_key: &[u8; 32]) -> Result<EpochKeys, AuditError> {
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| {
            AuditError::Key("the start record's encapsulated key is malformed".into())
        })?;
        let context = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.private,
            &encapped,
            &info(audit_key),
        )
        .map_err(|_| {
            AuditError::Key("the start record was not sealed to this auditor key".into())
        })?;
        EpochKeys::export(|label, out| context.export(label, out))
    }
}

fn info(audit_key: &[u8; 32]) -> Vec<u8> {
    [INFO_LABEL, audit_key.as_slice()].concat()
}

/// The keys of one epoch (one enclave start), on either side.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochKeys {
    record: [u8; 32],
    pseudonym: [u8; 32],
    digest: [u8; 32],
}

impl core::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EpochKeys(<never printed>)")
    }
}

impl EpochKeys {
    /// The enclave's side: encapsulates to `auditor` for the epoch signed
    /// by `audit_key`; returns the encapsulated key for the start record.
    pub fn new(
        auditor: &AuditorPublicKey,
        audit_key: &[u8; 32],
    ) -> Result<(Vec<u8>, Self), AuditError> {
        let public = <Kem as hpke::Kem>::PublicKey::from_bytes(&auditor.0)
            .map_err(|_| AuditError::Key("not an X25519 public key".into()))?;
        let (enc, context) = hpke::setup_sender::<ExportOnlyAead, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &public,
            &info(audit_key),
            // `UnwrapErr` panics only if the OS cannot supply randomness;
            // nothing could proceed safely without it.
            &mut OsRng.unwrap_err(),
        )
        .map_err(|_| AuditError::Key("HPKE encapsulation failed".into()))?;
        let keys = Self::export(|label, out| context.export(label, out))?;
        Ok((enc.to_bytes().to_vec(), keys))
    }

    fn export(
        export: impl Fn(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    ) -> Result<Self, AuditError> {
        let mut keys = Self {
            record: [0; 32],
            pseudonym: [0; 32],
            digest: [0; 32],
        };
        let failed = |_| AuditError::Key("HPKE export failed".into());
        export(b"record key", &mut keys.record).map_err(failed)?;
        export(b"pseudonym key", &mut keys.pseudonym).map_err(failed)?;
        export(b"digest key", &mut keys.digest).map_err(failed)?;
        Ok(keys)
    }

    fn nonce(seq: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        nonce
    }

    fn aad(seq: u64, enclave: &[u8]) -> Vec<u8> {
        [RECORD_AAD_LABEL, &seq.to_be_bytes(), enclave].concat()
    }

    fn cipher(&self) -> Result<LessSafeKey, AuditError> {
        UnboundKey::new(&AES_256_GCM, &self.record)
            .map(LessSafeKey::new)
            .map_err(|_| AuditError::Key("AES-256-GCM key".into()))
    }

    /// Encrypts record `seq`'s sealed fields.
    pub fn seal(&self, seq: u64, enclave: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AuditError> {
        let mut buffer = plaintext.to_vec();
        self.cipher()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(Self::nonce(seq)),
                Aad::from(Self::aad(seq, enclave)),
                &mut buffer,
            )
            .map_err(|_| AuditError::Key("AES-GCM encryption failed".into()))?;
        Ok(buffer)
    }

    /// Decrypts record `seq`'s sealed fields; fails if they were altered or
    /// moved from another record.
    pub fn open(&self, seq: u64, enclave: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, AuditError> {
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .cipher()?
            .open_in_place(
                Nonce::assume_unique_for_key(Self::nonce(seq)),
                Aad::from(Self::aad(seq, enclave)),
                &mut buffer,
            )
            .map_err(|_| AuditError::SealedFieldsAltered { seq })?;
        Ok(plaintext.to_vec())
    }

    /// The patient reference's pseudonym in this epoch: 128 bits, hex.
    pub fn pseudonym(&self, patient: &str) -> String {
        keyed(&self.pseudonym, b"patient", patient.as_bytes(), 16)
    }

    /// A keyed digest of a prompt or answer (`label` says which), hex.
    pub fn digest(&self, label: &str, text: &[u8]) -> String {
        keyed(&self.digest, label.as_bytes(), text, 32)
    }
}

fn keyed(key: &[u8; 32], label: &[u8], data: &[u8], len: usize) -> String {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    context.update(label);
    context.update(&[0]);
    context.update(data);
    let tag = context.sign();
    hex::encode(tag.as_ref().get(..len).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_auditor_opens_an_epoch_and_a_record_stays_in_its_place() {
        let auditor = AuditorKey::generate().unwrap();
        let audit_key = [9u8; 32];
        let (enc, enclave_side) = EpochKeys::new(&auditor.public(), &audit_key).unwrap();
        let auditor_side = auditor.open_epoch(&enc, &audit_key).unwrap();
        let sealed = enclave_side
            .seal(7, b"enclave", b"{\"patient\":\"MRN 1\"}")
            .unwrap();
        assert_eq!(
            auditor_side.open(7, b"enclave", &sealed).unwrap(),
            b"{\"patient\":\"MRN 1\"}"
        );
        assert_eq!(
            enclave_side.pseudonym("MRN 1"),
            auditor_side.pseudonym("MRN 1")
        );
        assert_ne!(
            enclave_side.pseudonym("MRN 1"),
            enclave_side.pseudonym("MRN 2")
        );
        assert_eq!(enclave_side.pseudonym("MRN 1").len(), 32);
        // Moved to another record or another enclave, or altered.
        assert!(auditor_side.open(8, b"enclave", &sealed).is_err());
        assert!(auditor_side.open(7, b"another", &sealed).is_err());
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(auditor_side.open(7, b"enclave", &altered).is_err());
        // Another auditor, or the encapsulation claimed for another epoch key.
        let stranger = AuditorKey::generate().unwrap();
        let theirs = stranger.open_epoch(&enc, &audit_key).unwrap();
        assert!(theirs.open(7, b"enclave", &sealed).is_err());
        let moved = auditor.open_epoch(&enc, &[8u8; 32]).unwrap();
        assert!(moved.open(7, b"enclave", &sealed).is_err());
    }

    #[test]
    fn the_key_file_round_trips_and_a_mismatched_one_is_refused() {
        let key = AuditorKey::generate().unwrap();
        let text = key.to_file_text();
        assert!(!format!("{key:?}").contains(&text[text.find("private = ").unwrap() + 11..][..64]));
        let read = AuditorKey::from_file_text(&text).unwrap();
        assert_eq!(read.public(), key.public());
        let other = AuditorKey::generate().unwrap();
        let mixed = text.replace(&key.public().to_hex(), &other.public().to_hex());
        assert!(AuditorKey::from_file_text(&mixed).is_err());
        assert!(AuditorKey::from_file_text("private = \"zz\"").is_err());
        assert!(AuditorPublicKey::from_hex("00").is_err());
    }
}
