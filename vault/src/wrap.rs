//! Wrapping a data key to an attested enclave's ephemeral public key.
//!
//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
//! and AES-256-GCM (suite ids 0x0020, 0x0001, 0x0002), through the `hpke`
//! crate. The enclave makes a fresh key pair for every release and binds
//! its public key into the evidence it sends the broker, so the key can only
//! be opened by the process whose evidence was appraised. The HPKE `info`
//! names the protocol and the key ID, and the associated data is the
//! release's context (the challenge nonce and the minimum bundle version),
//! so a wrapped key cannot be replayed into another release.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{OsRng, TryRngCore as _};

use crate::bundle::DataKey;
use crate::error::VaultError;

/// Length of an X25519 public key and of the HPKE encapsulated key.
pub const PUBLIC_KEY_LEN: usize = 32;

const INFO_LABEL: &[u8] = b"cloister/kbs/v1 key release\0";

/// What a wrapped key is bound to besides the recipient: the release it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseContext<'a> {
    /// The key being released.
    pub key_id: &'a str,
    /// The broker's challenge nonce for this release.
    pub nonce: &'a [u8],
    /// The release policy's minimum bundle version, which the enclave
    /// enforces on the bundle it unseals.
    pub min_bundle_version: u64,
}

impl ReleaseContext<'_> {
    fn info(&self) -> Vec<u8> {
        [INFO_LABEL, self.key_id.as_bytes()].concat()
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.nonce.len() + 16);
        aad.extend_from_slice(&(self.nonce.len() as u64).to_be_bytes());
        aad.extend_from_slice(self.nonce);
        aad.extend_from_slice(&self.min_bundle_version.to_be_bytes());
        aad
    }
}

/// The enclave's ephemeral key pair for one release. The private half
/// never leaves the process (and is zeroed on drop by `hpke`).
pub struct RecipientKey {
    private: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl core::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecipientKey")
            .field("public", &hex::encode(self.public))
            .field("private", &"<never printed>")
            .finish()
    }
}

impl RecipientKey {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, VaultError> {
        let mut ikm = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut ikm)
            .map_err(|_| VaultError::Crypto("no randomness"))?;
        let (private, public) = X25519HkdfSha256::derive_keypair(&ikm);
        let public = public
            .to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Crypto("X25519 public key length"))?;
        Ok(Self { private, public })
    }

    /// The public key the evidence binds and the broker wraps to.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// Opens a key the broker wrapped to this key pair for `context`.
    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &ReleaseContext<'_>,
    ) -> Result<DataKey, VaultError> {
        let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
            .map_err(|_| VaultError::UnwrapFailed)?;
        let plaintext = hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.private,
            &encapped,
            &context.info(),
            &wrapped.ciphertext,
            &context.aad(),
        )
        .map_err(|_| VaultError::UnwrapFailed)?;
        let bytes: [u8; 32] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::UnwrapFailed)?;
        Ok(DataKey::from_bytes(bytes))
    }
}

/// A data key sealed to one enclave key pair: the HPKE encapsulated key and
/// the AEAD ciphertext (32 key bytes and a 16-byte tag).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    /// HPKE `enc`, hex.
    #[serde(with = "hex::serde")]
    pub enc: Vec<u8>,
    /// HPKE ciphertext, hex.
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
}

/// Wraps `key` to `recipient` (an X25519 public key) for `context`.
pub fn wrap(
    key: &DataKey,
    recipient: &[u8],
    context: &ReleaseContext<'_>,
) -> Result<WrappedKey, VaultError> {
    let public = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| VaultError::InvalidParams("recipient is not an X25519 public key".into()))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &public,
        &context.info(),
        key.as_bytes(),
        &context.aad(),
        // `UnwrapErr` panics if the OS cannot supply randomness: no input
        // causes that, and nothing in the process could proceed safely
        // without it.
        &mut OsRng.unwrap_err(),
    )
    .map_err(|_| VaultError::Crypto("HPKE seal"))?;
    Ok(WrappedKey {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn context(nonce: &[u8]) -> ReleaseContext<'_> {
        ReleaseContext {
            key_id: "model-key",
            nonce,
            min_bundle_version: 2,
        }
    }

    #[test]
    fn round_trip_and_every_binding_holds() {
        let key = DataKey::generate().unwrap();
        let recipient = RecipientKey::generate().unwrap();
        let nonce = [7u8; 32];
        let wrapped = wrap(&key, recipient.public_key(), &context(&nonce)).unwrap();
        let opened = recipient.unwrap(&wrapped, &context(&nonce)).unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());

        // Another recipient, another nonce, another minimum, another key ID.
        let other = RecipientKey::generate().unwrap();
        assert!(matches!(
            other.unwrap(&wrapped, &context(&nonce)),
            Err(VaultError::UnwrapFailed)
        ));
        assert!(matches!(
            recipient.unwrap(&wrapped, &context(&[8u8; 32])),
            Err(VaultError::UnwrapFailed)
        ));
        let lowered = ReleaseContext {
            min_bundle_version: 1,
            ..context(&nonce)
        };
        assert!(matches!(
            recipient.unwrap(&wrapped, &lowered),
            Err(VaultError::UnwrapFailed)
        ));
        let renamed = ReleaseContext {
            key_id: "data-key",
            ..context(&nonce)
        };
        assert!(matches!(
            recipient.unwrap(&wrapped, &renamed),
            Err(VaultError::UnwrapFailed)
        ));
        let mut flipped = wrapped.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            recipient.unwrap(&flipped, &context(&nonce)),
            Err(VaultError::UnwrapFailed)
        ));
        let short = WrappedKey {
            enc: vec![1, 2, 3],
            ciphertext: wrapped.ciphertext.clone(),
        };
        assert!(matches!(
            recipient.unwrap(&short, &context(&nonce)),
            Err(VaultError::UnwrapFailed)
        ));
    }

    #[test]
    fn a_bad_recipient_key_is_refused() {
        let key = DataKey::generate().unwrap();
        assert!(matches!(
            wrap(&key, &[0u8; 5], &context(&[1u8; 32])),
            Err(VaultError::InvalidParams(_))
        ));
    }
}
