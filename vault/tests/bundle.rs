//! Sealed bundles: round trips at every size boundary, and every way a host
//! could tamper with a bundle, each failing with its own error.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use cloister_vault::{
    seal, seal_to_vec, unseal, unseal_in_place, unseal_to_vec, BundleHeader, ContentKind, DataKey,
    SealParams, VaultError, HEADER_LEN,
};

const CHUNK_LOG2: u8 = 12; // 4 KiB chunks make boundaries cheap to reach
const CHUNK: usize = 1 << CHUNK_LOG2;

fn params(version: u64) -> SealParams {
    SealParams {
        key_id: "model-2026-11".into(),
        kind: ContentKind::Model,
        bundle_version: version,
        chunk_log2: CHUNK_LOG2,
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// Seals with the streaming path and the in-memory path; they must agree
/// on layout (the salt differs, so only lengths are compared).
fn sealed(data: &[u8], key: &DataKey) -> Vec<u8> {
    let mut out = Vec::new();
    let streamed = seal(
        &mut Cursor::new(data),
        &mut out,
        key,
        &params(3),
        &mut |_| {},
    )
    .unwrap();
    let (header, in_memory) = seal_to_vec(data, key, &params(3)).unwrap();
    assert_eq!(in_memory.len(), out.len());
    // Keyed under each bundle's own salt: the same plaintext never shows
    // the same digest twice, so the host cannot tell two bundles apart or
    // confirm a guess of their contents.
    assert_ne!(header.plaintext_mac, streamed.plaintext_mac);
    assert_eq!(unseal_to_vec(&in_memory, key, true).unwrap().1, data);
    out
}

/// Unseals with all three paths (into a new buffer, streaming, in place);
/// they must agree, error variant included, and a failed in-place unseal
/// leaves nothing behind.
fn open(bundle: &[u8], key: &DataKey) -> Result<Vec<u8>, VaultError> {
    let in_memory = unseal_to_vec(bundle, key, true).map(|(_, p)| p);
    let mut out = Vec::new();
    let streamed = unseal(&mut &bundle[..], &mut out, key, true, &mut |_| {}).map(|_| out);
    let mut buffer = bundle.to_vec();
    let in_place = unseal_in_place(&mut buffer, key, true).map(|_| buffer.clone());
    if in_place.is_err() {
        assert!(
            buffer.is_empty(),
            "a failed in-place unseal kept {} bytes",
            buffer.len()
        );
    }
    for (name, other) in [("streamed", &streamed), ("in place", &in_place)] {
        match (&in_memory, other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "in memory: {a}; {name}: {b}"
            ),
            _ => panic!("paths disagree: {in_memory:?} vs {name} {other:?}"),
        }
    }
    in_memory
}

#[test]
fn round_trips_at_every_boundary() {
    let key = DataKey::generate().unwrap();
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
        let data = plaintext(len);
        let bundle = sealed(&data, &key);
        let chunks = len.div_ceil(CHUNK).max(1);
        assert_eq!(bundle.len(), HEADER_LEN + len + 16 * chunks, "len {len}");
        let back = open(&bundle, &key).unwrap();
        let (header, _) = unseal_to_vec(&bundle, &key, false).unwrap();
        assert_eq!(back, data, "len {len}");
        assert_eq!(header.plaintext_len, len as u64);
        assert_eq!(header.bundle_version, 3);
        assert_eq!(header.key_id, "model-2026-11");
        assert_eq!(header.kind, ContentKind::Model);
    }
}

#[test]
fn two_seals_of_the_same_data_differ() {
    let key = DataKey::generate().unwrap();
    let data = plaintext(100);
    assert_ne!(sealed(&data, &key), sealed(&data, &key));
}

#[test]
fn a_wrong_key_is_its_own_error() {
    let bundle = sealed(&plaintext(5000), &DataKey::generate().unwrap());
    let err = open(&bundle, &DataKey::generate().unwrap()).unwrap_err();
    assert!(
        matches!(err, VaultError::WrongKey { ref key_id } if key_id == "model-2026-11"),
        "{err}"
    );
}

#[test]
fn a_modified_header_is_refused() {
    let key = DataKey::generate().unwrap();
    let bundle = sealed(&plaintext(5000), &key);
    // Rolling the version forward (or back) by editing the header.
    let mut edited = bundle.clone();
    edited[16] ^= 0x04;
    assert!(matches!(
        open(&edited, &key),
        Err(VaultError::HeaderModified)
    ));
    // Every header byte outside the key check and salt: refused as modified
    // or malformed, never accepted.
    for i in 0..HEADER_LEN {
        let mut b = bundle.clone();
        b[i] ^= 0x01;
        assert!(open(&b, &key).is_err(), "header byte {i} flip accepted");
    }
    let mut magic = bundle;
    magic[0] = b'X';
    assert!(matches!(open(&magic, &key), Err(VaultError::Malformed(_))));
}

#[test]
fn tampered_reordered_and_spliced_chunks_are_refused() {
    let key = DataKey::generate().unwrap();
    let data = plaintext(3 * CHUNK);
    let bundle = sealed(&data, &key);
    let chunk = |i: usize| HEADER_LEN + i * (CHUNK + 16)..HEADER_LEN + (i + 1) * (CHUNK + 16);

    let mut flipped = bundle.clone();
    flipped[chunk(1).start + 100] ^= 0x80;
    assert!(matches!(
        open(&flipped, &key),
        Err(VaultError::ChunkRejected { index: 1 })
    ));

    let mut swapped = bundle.clone();
    let (c0, c1) = (bundle[chunk(0)].to_vec(), bundle[chunk(1)].to_vec());
    swapped[chunk(0)].copy_from_slice(&c1);
    swapped[chunk(1)].copy_from_slice(&c0);
    assert!(matches!(
        open(&swapped, &key),
        Err(VaultError::ChunkRejected { index: 0 })
    ));

    // A chunk from another bundle sealed under the same key.
    let other = sealed(&plaintext(3 * CHUNK), &key);
    let mut spliced = bundle.clone();
    spliced[chunk(2)].copy_from_slice(&other[chunk(2)]);
    assert!(matches!(
        open(&spliced, &key),
        Err(VaultError::ChunkRejected { index: 2 })
    ));
}

#[test]
fn truncation_and_trailing_data_are_refused() {
    let key = DataKey::generate().unwrap();
    let bundle = sealed(&plaintext(3 * CHUNK + 5), &key);
    for cut in [
        HEADER_LEN,
        HEADER_LEN + 1,
        HEADER_LEN + CHUNK + 16,
        bundle.len() - 21,
        bundle.len() - 1,
    ] {
        let err = open(&bundle[..cut], &key).unwrap_err();
        assert!(
            matches!(err, VaultError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
    // Dropping the whole final chunk: the header says there is one more.
    let last_start = HEADER_LEN + 3 * (CHUNK + 16);
    assert!(matches!(
        open(&bundle[..last_start], &key),
        Err(VaultError::Truncated { .. })
    ));
    assert!(matches!(
        open(&bundle[..100], &key),
        Err(VaultError::Malformed(_))
    ));

    let mut longer = bundle;
    longer.push(0);
    assert!(matches!(open(&longer, &key), Err(VaultError::TrailingData)));
}

/// Produces `len` bytes on demand without holding them: sealing and
/// unsealing stream, so a bundle need not fit in memory.
struct Generated {
    len: u64,
    pos: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.pos + i as u64) % 251) as u8;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Generated {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        if let SeekFrom::Start(p) = to {
            self.pos = p;
        }
        Ok(self.pos)
    }
}

/// Checks what is written against the generator, keeping nothing.
struct Checker {
    pos: u64,
}

impl Write for Checker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            assert_eq!(*b, (self.pos % 251) as u8);
            self.pos += 1;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streams_through_files_in_bounded_memory() {
    let key = DataKey::generate().unwrap();
    let len = 48 * 1024 * 1024 + 3;
    let dir = std::env::temp_dir().join(format!("cloister-vault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.sealed");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut sealed_so_far = 0;
    let header = seal(
        &mut Generated { len, pos: 0 },
        &mut file,
        &key,
        &SealParams {
            chunk_log2: 20,
            ..params(1)
        },
        &mut |n| sealed_so_far = n,
    )
    .unwrap();
    drop(file);
    assert_eq!(sealed_so_far, 2 * len, "both passes are reported");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), header.sealed_len());
    let mut checker = Checker { pos: 0 };
    let mut input = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let out = unseal(&mut input, &mut checker, &key, true, &mut |_| {}).unwrap();
    assert!(out.digest_verified);
    assert_eq!(checker.pos, len);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_holder_can_authenticate_a_header_alone() {
    let key = DataKey::generate().unwrap();
    let bundle = sealed(&plaintext(100), &key);
    let header = BundleHeader::verify(&bundle[..HEADER_LEN], &key).unwrap();
    assert_eq!(header.bundle_version, 3);
    assert!(matches!(
        BundleHeader::verify(&bundle[..HEADER_LEN], &DataKey::generate().unwrap()),
        Err(VaultError::WrongKey { .. })
    ));
    let mut relabelled = bundle[..HEADER_LEN].to_vec();
    relabelled[16] = 9;
    assert!(matches!(
        BundleHeader::verify(&relabelled, &key),
        Err(VaultError::HeaderModified)
    ));
    assert!(matches!(
        BundleHeader::verify(&bundle[..HEADER_LEN + 1], &key),
        Err(VaultError::Malformed(_))
    ));
}
