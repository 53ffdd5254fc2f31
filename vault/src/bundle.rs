//! The bundle format: header, key schedule, and the streaming seal and
//! unseal loops.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::{constant_time, hkdf, hmac, rand};
use serde::Serialize;

use crate::error::VaultError;

/// Header length in bytes.
pub const HEADER_LEN: usize = 224;
/// Smallest chunk: 4 KiB.
pub const MIN_CHUNK_LOG2: u8 = 12;
/// Largest chunk: 16 MiB.
pub const MAX_CHUNK_LOG2: u8 = 24;
/// Default chunk: 1 MiB (memory per stream; large enough that per-chunk
/// costs vanish).
pub const DEFAULT_CHUNK_LOG2: u8 = 20;

const MAGIC: [u8; 8] = *b"CLVAULT\0";
const FORMAT_VERSION: u16 = 1;
const MAC_OFFSET: usize = 192;
const TAG_LEN: usize = 16;
const MAX_KEY_ID: usize = 64;
/// STREAM's counter is 32 bits.
const MAX_CHUNKS: u64 = 1 << 32;

type Result<T> = core::result::Result<T, VaultError>;

/// A 256-bit data key. Never printed; compared in constant time only
/// through the bundle's key check.
pub struct DataKey([u8; 32]);

impl core::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        rand::fill(&mut key).map_err(|_| VaultError::Crypto("no randomness"))?;
        Ok(Self(key))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|e| VaultError::InvalidParams(format!("a key is 64 hex digits: {e}")))?;
        Ok(Self(key))
    }

    /// The key as 64 hex digits, for the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes (for wrapping to an attested key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// What a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// Model weights and tokenizer.
    Model,
    /// Patient or reference data.
    Data,
    /// Anything else.
    Other,
}

impl ContentKind {
    /// The kind's name, as configuration files write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Data => "data",
            Self::Other => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Model => 1,
            Self::Data => 2,
            Self::Other => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Model),
            2 => Some(Self::Data),
            3 => Some(Self::Other),
            _ => None,
        }
    }
}

/// How to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealParams {
    /// Names the key (1 to 64 printable ASCII characters) so a key broker
    /// knows which key to release.
    pub key_id: String,
    /// What the bundle holds.
    pub kind: ContentKind,
    /// Monotonic version; release policies refuse versions below their minimum.
    pub bundle_version: u64,
    /// log2 of the chunk size.
    pub chunk_log2: u8,
}

/// A parsed header. Parsing checks structure only; the MAC and key check
/// need the key ([`unseal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleHeader {
    /// Format version.
    pub format_version: u16,
    /// Content kind.
    pub kind: ContentKind,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Key ID.
    pub key_id: String,
    /// Bundle version.
    pub bundle_version: u64,
    /// Plaintext length.
    pub plaintext_len: u64,
    /// HMAC-SHA-256 of the plaintext under a key derived from the data key
    /// and this bundle's salt: it identifies the contents to whoever holds
    /// the key, and tells the host nothing (a plain hash would let it
    /// confirm a guess, or see that two bundles hold the same data).
    #[serde(with = "hex::serde")]
    pub plaintext_mac: [u8; 32],
    #[serde(skip)]
    salt: [u8; 32],
    #[serde(skip)]
    key_check: [u8; 32],
    #[serde(skip)]
    raw: Vec<u8>,
}

impl BundleHeader {
    /// Parses the first [`HEADER_LEN`] bytes of a bundle.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| VaultError::Malformed(what.to_owned());
        let raw = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| bad("shorter than the 224-byte header"))?;
        let field = |at: usize, len: usize| raw.get(at..at + len).unwrap_or_default();
        let u16_at = |at| u16::from_le_bytes(field(at, 2).try_into().unwrap_or_default());
        let u64_at = |at| u64::from_le_bytes(field(at, 8).try_into().unwrap_or_default());
        let array = |at| -> [u8; 32] { field(at, 32).try_into().unwrap_or([0; 32]) };
        if field(0, 8) != MAGIC {
            return Err(bad("magic is not CLVAULT"));
        }
        let format_version = u16_at(8);
        if format_version != FORMAT_VERSION {
            return Err(VaultError::UnsupportedVersion(format_version));
        }
        let kind = field(10, 1)
            .first()
            .and_then(|c| ContentKind::from_code(*c))
            .ok_or_else(|| bad("unknown content kind"))?;
        let chunk_log2 = field(12, 1).first().copied().unwrap_or(0);
        if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&chunk_log2) {
            return Err(bad("chunk size out of range"));
        }
        let key_id_len = usize::from(field(13, 1).first().copied().unwrap_or(0));
        if field(11, 1) != [0] || field(14, 2) != [0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        if key_id_len == 0 || key_id_len > MAX_KEY_ID {
            return Err(bad("key ID length out of range"));
        }
        let key_id_field = field(128, MAX_KEY_ID);
        let (key_id, padding) = key_id_field.split_at(key_id_len);
        if padding.iter().any(|&b| b != 0) || !key_id.iter().all(|b| b.is_ascii_graphic()) {
            return Err(bad("key ID is not printable ASCII followed by zeros"));
        }
        let header = Self {
            format_version,
            kind,
            chunk_size: 1 << chunk_log2,
            key_id: String::from_utf8_lossy(key_id).into_owned(),
            bundle_version: u64_at(16),
            plaintext_len: u64_at(24),
            plaintext_mac: array(32),
            salt: array(64),
            key_check: array(96),
            raw: raw.to_vec(),
        };
        if header.chunk_count() > MAX_CHUNKS {
            return Err(bad("more chunks than the 32-bit counter allows"));
        }
        Ok(header)
    }

    /// Number of chunks (at least one: an empty plaintext has one empty chunk).
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len
            .div_ceil(u64::from(self.chunk_size))
            .max(1)
    }

    /// Total length of the sealed bundle, header included.
    pub fn sealed_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plaintext_len + self.chunk_count() * TAG_LEN as u64
    }

    /// The header bytes as written (every chunk's associated data).
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Parses a header and proves it was sealed under `key` and not
    /// modified since: what a key holder (the broker) can say of a bundle
    /// from its header alone.
    pub fn verify(raw: &[u8], key: &DataKey) -> Result<Self> {
        if raw.len() != HEADER_LEN {
            return Err(VaultError::Malformed(format!(
                "a header is {HEADER_LEN} bytes, got {}",
                raw.len()
            )));
        }
        open_header(raw, key).map(|(header, _)| header)
    }
}

/// Per-bundle keys, derived from the data key and the bundle's salt.
struct BundleKeys {
    aead: LessSafeKey,
    nonce_prefix: [u8; 7],
    key_check: [u8; 32],
    mac: hmac::Key,
    plaintext: hmac::Key,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, label: &str, out: &mut [u8]) -> Result<()> {
    let info = [b"cloister/vault/v1 ".as_slice(), label.as_bytes()];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| VaultError::Crypto("HKDF failed"))
}

fn derive(key: &DataKey, salt: &[u8; 32]) -> Result<BundleKeys> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&key.0);
    let mut aes = [0u8; 32];
    let mut nonce_prefix = [0u8; 7];
    let mut key_check = [0u8; 32];
    let mut mac = [0u8; 32];
    let mut plaintext = [0u8; 32];
    expand(&prk, "aes-256-gcm key", &mut aes)?;
    expand(&prk, "nonce prefix", &mut nonce_prefix)?;
    expand(&prk, "key check", &mut key_check)?;
    expand(&prk, "header mac", &mut mac)?;
    expand(&prk, "plaintext mac", &mut plaintext)?;
    let aead = UnboundKey::new(&AES_256_GCM, &aes)
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::Crypto("AES-256-GCM key"))?;
    Ok(BundleKeys {
        aead,
        nonce_prefix,
        key_check,
        mac: hmac::Key::new(hmac::HMAC_SHA256, &mac),
        plaintext: hmac::Key::new(hmac::HMAC_SHA256, &plaintext),
    })
}

impl BundleKeys {
    /// STREAM nonce: 7-byte prefix, 32-bit big-endian counter, last-chunk flag.
    fn nonce(&self, index: u64, last: bool) -> Result<Nonce> {
        let counter = u32::try_from(index)
            .map_err(|_| VaultError::InvalidParams("too many chunks".into()))?;
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&self.nonce_prefix);
        n[7..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = u8::from(last);
        // Unique per (bundle key, index, last): the key is derived from a
        // fresh random salt for every bundle.
        Ok(Nonce::assume_unique_for_key(n))
    }
}

fn check_params(params: &SealParams) -> Result<()> {
    if params.key_id.is_empty()
        || params.key_id.len() > MAX_KEY_ID
        || !params.key_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(VaultError::InvalidParams(
            "key ID must be 1 to 64 printable ASCII characters without spaces".into(),
        ));
    }
    if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&params.chunk_log2) {
        return Err(VaultError::InvalidParams(format!(
            "chunk size must be 2^{MIN_CHUNK_LOG2} to 2^{MAX_CHUNK_LOG2} bytes"
        )));
    }
    Ok(())
}

/// A fresh salt and the keys it derives: the start of every seal.
fn fresh_keys(key: &DataKey) -> Result<([u8; 32], BundleKeys)> {
    let mut salt = [0u8; 32];
    rand::fill(&mut salt).map_err(|_| VaultError::Crypto("no randomness"))?;
    let keys = derive(key, &salt)?;
    Ok((salt, keys))
}

/// The MAC'd header for a bundle sealed under `keys`.
fn new_header(
    params: &SealParams,
    salt: &[u8; 32],
    keys: &BundleKeys,
    plaintext_len: u64,
    plaintext_mac: &[u8],
) -> Result<([u8; HEADER_LEN], BundleHeader)> {
    let mut raw = [0u8; HEADER_LEN];
    raw[0..8].copy_from_slice(&MAGIC);
    raw[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    raw[10] = params.kind.code();
    raw[12] = params.chunk_log2;
    raw[13] = params.key_id.len() as u8;
    raw[16..24].copy_from_slice(&params.bundle_version.to_le_bytes());
    raw[24..32].copy_from_slice(&plaintext_len.to_le_bytes());
    raw.get_mut(32..64)
        .filter(|field| field.len() == plaintext_mac.len())
        .ok_or(VaultError::Crypto("plaintext MAC length"))?
        .copy_from_slice(plaintext_mac);
    raw[64..96].copy_from_slice(salt);
    raw[96..128].copy_from_slice(&keys.key_check);
    raw.get_mut(128..128 + params.key_id.len())
        .ok_or(VaultError::Crypto("key ID field"))?
        .copy_from_slice(params.key_id.as_bytes());
    let mac = hmac::sign(&keys.mac, &raw[..MAC_OFFSET]);
    raw[MAC_OFFSET..].copy_from_slice(mac.as_ref());
    let header = BundleHeader::parse(&raw)?;
    Ok((raw, header))
}

/// Checks a recomputed plaintext MAC against the header's, in constant time.
fn check_plaintext_mac(computed: hmac::Tag, header: &BundleHeader) -> Result<()> {
    constant_time::verify_slices_are_equal(computed.as_ref(), &header.plaintext_mac)
        .map_err(|_| VaultError::DigestMismatch)
}

/// Parses the header, then proves the key is right and the header intact.
fn open_header(raw: &[u8], key: &DataKey) -> Result<(BundleHeader, BundleKeys)> {
    let header = BundleHeader::parse(raw)?;
    let keys = derive(key, &header.salt)?;
    constant_time::verify_slices_are_equal(&keys.key_check, &header.key_check).map_err(|_| {
        VaultError::WrongKey {
            key_id: header.key_id.clone(),
        }
    })?;
    let (signed, mac) = header.raw.split_at(MAC_OFFSET);
    hmac::verify(&keys.mac, signed, mac).map_err(|_| VaultError::HeaderModified)?;
    Ok((header, keys))
}

/// Seals a buffer into a new buffer: one plaintext-MAC pass, then each chunk
/// encrypted straight from the input into the output (no staging copy).
pub fn seal_to_vec(
    plaintext: &[u8],
    key: &DataKey,
    params: &SealParams,
) -> Result<(BundleHeader, Vec<u8>)> {
    check_params(params)?;
    let (salt, keys) = fresh_keys(key)?;
    let digest = hmac::sign(&keys.plaintext, plaintext);
    let (raw, header) = new_header(
        params,
        &salt,
        &keys,
        plaintext.len() as u64,
        digest.as_ref(),
    )?;
    let mut out = vec![
        0u8;
        usize::try_from(header.sealed_len()).map_err(|_| {
            VaultError::InvalidParams("bundle too large for this platform".into())
        })?
    ];
    let (head, mut rest) = out.split_at_mut(HEADER_LEN);
    head.copy_from_slice(&raw);
    let chunks = header.chunk_count();
    let mut pieces = plaintext.chunks(header.chunk_size as usize);
    for index in 0..chunks {
        let piece = pieces.next().unwrap_or_default();
        let (ciphertext, after) = rest.split_at_mut(piece.len());
        let (tag, after) = after.split_at_mut(TAG_LEN);
        let t = keys
            .aead
            .seal_in_place_separate_tag(keys.nonce(index, index + 1 == chunks)?, Aad::from(&raw), {
                ciphertext.copy_from_slice(piece);
                ciphertext
            })
            .map_err(|_| VaultError::Crypto("AES-256-GCM seal"))?;
        tag.copy_from_slice(t.as_ref());
        rest = after;
    }
    Ok((header, out))
}

/// Seals `input` into `output`. Reads the input twice (once for its length
/// and plaintext MAC, which the header carries, once to encrypt), one chunk at a
/// time. `progress` is told the bytes read so far over both passes, so it
/// ends at twice the plaintext length.
pub fn seal<R: Read + Seek, W: Write>(
    input: &mut R,
    output: &mut W,
    key: &DataKey,
    params: &SealParams,
    progress: &mut dyn FnMut(u64),
) -> Result<BundleHeader> {
    check_params(params)?;
    let chunk_size = 1usize << params.chunk_log2;
    let mut buf = vec![0u8; chunk_size + TAG_LEN];

    // Pass 1: length and plaintext MAC.
    let (salt, keys) = fresh_keys(key)?;
    let start = input.stream_position()?;
    let mut hasher = hmac::Context::with_key(&keys.plaintext);
    let mut plaintext_len = 0u64;
    loop {
        let n = read_full(input, part(&mut buf, chunk_size)?)?;
        hasher.update(part(&mut buf, n)?);
        plaintext_len += n as u64;
        progress(plaintext_len);
        if n < chunk_size {
            break;
        }
    }
    let plaintext_mac = hasher.sign();
    input.seek(SeekFrom::Start(start))?;

    let (raw, header) = new_header(params, &salt, &keys, plaintext_len, plaintext_mac.as_ref())?;
    output.write_all(&raw)?;

    // Pass 2: encrypt, chunk by chunk.
    let chunks = header.chunk_count();
    let mut sealed = 0u64;
    for index in 0..chunks {
        let last = index + 1 == chunks;
        let len = if last {
            (plaintext_len - sealed) as usize
        } else {
            chunk_size
        };
        let chunk = part(&mut buf, len)?;
        if read_full(input, chunk)? != len {
            return Err(VaultError::InvalidParams(
                "the input shrank while it was being sealed".into(),
            ));
        }
        let tag = keys
            .aead
            .seal_in_place_separate_tag(keys.nonce(index, last)?, Aad::from(&raw), chunk)
            .map_err(|_| VaultError::Crypto("AES-256-GCM seal"))?;
        output.write_all(chunk)?;
        output.write_all(tag.as_ref())?;
        sealed += len as u64;
        progress(plaintext_len + sealed);
    }
    if read_full(input, &mut [0u8; 1])? != 0 {
        return Err(VaultError::InvalidParams(
            "the input grew while it was being sealed".into(),
        ));
    }
    output.flush()?;
    Ok(header)
}

/// The outcome of [`unseal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsealed {
    /// The verified header.
    pub header: BundleHeader,
    /// Whether the plaintext MAC was recomputed and matched.
    pub digest_verified: bool,
}

/// Unseals `input` into `output`, one chunk at a time, each written only
/// after its tag verified. A later chunk can still fail, so whatever was
/// written is untrusted until this returns `Ok`: write to a temporary file
/// and rename, or to memory and discard on error. With `verify_digest`, the
/// plaintext MAC is recomputed (the tags already authenticate it; this
/// guards against a faulty sealer).
pub fn unseal<R: Read, W: Write>(
    input: &mut R,
    output: &mut W,
    key: &DataKey,
    verify_digest: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Unsealed> {
    let mut raw = [0u8; HEADER_LEN];
    let n = read_full(input, &mut raw)?;
    if n < HEADER_LEN {
        return Err(VaultError::Malformed(format!(
            "{n} bytes is shorter than the {HEADER_LEN}-byte header"
        )));
    }
    let (header, keys) = open_header(&raw, key)?;

    let chunk_size = header.chunk_size as usize;
    let mut buf = vec![0u8; chunk_size + TAG_LEN];
    let chunks = header.chunk_count();
    let mut hasher = verify_digest.then(|| hmac::Context::with_key(&keys.plaintext));
    let mut done = 0u64;
    let expected = header.sealed_len() - HEADER_LEN as u64;
    for index in 0..chunks {
        let last = index + 1 == chunks;
        let len = if last {
            (header.plaintext_len - done) as usize
        } else {
            chunk_size
        };
        let sealed_chunk = part(&mut buf, len + TAG_LEN)?;
        let got = read_full(input, sealed_chunk)?;
        if got < len + TAG_LEN {
            return Err(VaultError::Truncated {
                expected,
                found: done + index * TAG_LEN as u64 + got as u64,
            });
        }
        let plaintext = keys
            .aead
            .open_in_place(keys.nonce(index, last)?, Aad::from(&raw), sealed_chunk)
            .map_err(|_| VaultError::ChunkRejected { index })?;
        if let Some(h) = hasher.as_mut() {
            h.update(&*plaintext);
        }
        output.write_all(plaintext)?;
        done += len as u64;
        progress(done);
    }
    if read_full(input, &mut [0u8; 1])? != 0 {
        return Err(VaultError::TrailingData);
    }
    if let Some(h) = hasher {
        check_plaintext_mac(h.sign(), &header)?;
    }
    output.flush()?;
    Ok(Unsealed {
        header,
        digest_verified: verify_digest,
    })
}

/// Opens the header of a bundle held whole in memory and checks the bundle
/// is exactly as long as the header says; returns the plaintext length.
fn open_whole(bundle: &[u8], key: &DataKey) -> Result<(BundleHeader, BundleKeys, usize)> {
    let (header, keys) = open_header(bundle, key)?;
    let expected = header.sealed_len();
    if (bundle.len() as u64) < expected {
        return Err(VaultError::Truncated {
            expected: expected - HEADER_LEN as u64,
            found: (bundle.len() as u64).saturating_sub(HEADER_LEN as u64),
        });
    }
    if bundle.len() as u64 > expected {
        return Err(VaultError::TrailingData);
    }
    let len = usize::try_from(header.plaintext_len)
        .map_err(|_| VaultError::InvalidParams("bundle too large for this platform".into()))?;
    Ok((header, keys, len))
}

/// Unseals a bundle held in memory into a new buffer (the bundle is kept),
/// decrypting each chunk straight from the bundle into the output. Nothing
/// is returned unless every chunk (and, with `verify_digest`, the plaintext
/// MAC) verified.
pub fn unseal_to_vec(
    bundle: &[u8],
    key: &DataKey,
    verify_digest: bool,
) -> Result<(BundleHeader, Vec<u8>)> {
    let (header, keys, len) = open_whole(bundle, key)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| VaultError::InvalidParams("bundle is larger than available memory".into()))?;
    out.resize(len, 0);
    let chunks = header.chunk_count();
    let mut sealed = bundle.get(HEADER_LEN..).unwrap_or_default();
    let mut pieces = out.chunks_mut(header.chunk_size as usize);
    for index in 0..chunks {
        let piece = pieces.next().unwrap_or_default();
        let (ciphertext, after) = sealed.split_at(piece.len());
        let (tag, after) = after.split_at(TAG_LEN);
        keys.aead
            .open_separate_gather(
                keys.nonce(index, index + 1 == chunks)?,
                Aad::from(header.as_bytes()),
                ciphertext,
                tag,
                piece,
            )
            .map_err(|_| VaultError::ChunkRejected { index })?;
        sealed = after;
    }
    if verify_digest {
        check_plaintext_mac(hmac::sign(&keys.plaintext, &out), &header)?;
    }
    Ok((header, out))
}

/// Unseals a bundle where it lies: each chunk is decrypted in place and
/// moved down over the header and the tags before it, so the plaintext ends
/// up in `bundle[..plaintext_len]` and the buffer is truncated to it. One
/// pass over memory while the chunk is still in cache, no second buffer:
/// the enclave reads the host's ciphertext once and decrypts it there. On
/// any error the buffer is zeroed and emptied, so no unverified plaintext
/// can be used.
pub fn unseal_in_place(
    bundle: &mut Vec<u8>,
    key: &DataKey,
    verify_digest: bool,
) -> Result<BundleHeader> {
    let outcome = open_in_place(bundle, key, verify_digest);
    if outcome.is_err() {
        zeroize::Zeroize::zeroize(bundle);
    }
    outcome
}

fn open_in_place(bundle: &mut Vec<u8>, key: &DataKey, verify_digest: bool) -> Result<BundleHeader> {
    let (header, keys, plaintext_len) = open_whole(bundle, key)?;
    let chunk_size = header.chunk_size as usize;
    let chunks = header.chunk_count();
    let (mut read, mut written) = (HEADER_LEN, 0usize);
    for index in 0..chunks {
        let len = chunk_size.min(plaintext_len - written);
        let sealed = bundle
            .get_mut(read..read + len + TAG_LEN)
            .ok_or(VaultError::Crypto("chunk outside the bundle"))?;
        keys.aead
            .open_in_place(
                keys.nonce(index, index + 1 == chunks)?,
                Aad::from(header.as_bytes()),
                sealed,
            )
            .map_err(|_| VaultError::ChunkRejected { index })?;
        bundle.copy_within(read..read + len, written);
        read += len + TAG_LEN;
        written += len;
    }
    bundle.truncate(written);
    if verify_digest {
        check_plaintext_mac(hmac::sign(&keys.plaintext, bundle), &header)?;
    }
    Ok(header)
}

/// The first `len` bytes of the chunk buffer.
fn part(buf: &mut [u8], len: usize) -> Result<&mut [u8]> {
    buf.get_mut(..len)
        .ok_or(VaultError::Crypto("chunk longer than its buffer"))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(input: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}
