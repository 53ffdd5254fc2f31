//! Sealing and unsealing throughput beside raw AES-256-GCM over the same
//! 64 MiB buffer: aws-lc-rs (what the vault uses) in one call, and
//! RustCrypto's `aes-gcm` as a second reference. The vault adds per-chunk
//! nonces and tags, the header, the copy through `Read`/`Write` (streaming
//! paths), and (seal, and unseal with the check) an HMAC-SHA-256 pass for
//! the header's plaintext MAC.
//!
//! Decryption consumes its input, so every decrypting routine, baselines
//! included, gets a fresh copy of its ciphertext from an untimed setup
//! (`iter_batched`); the allocation and the copy are not measured.
//!
//! Run: `cargo bench -p cloister-vault --bench seal`

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::io::Cursor;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use cloister_vault::{
    seal, seal_to_vec, unseal, unseal_in_place, unseal_to_vec, ContentKind, DataKey, SealParams,
    DEFAULT_CHUNK_LOG2,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const LEN: usize = 64 * 1024 * 1024;

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    let key = DataKey::generate().unwrap();
    let params = SealParams {
        key_id: "bench".into(),
        kind: ContentKind::Data,
        bundle_version: 1,
        chunk_log2: DEFAULT_CHUNK_LOG2,
    };
    let (_, bundle) = seal_to_vec(&data, &key, &params).unwrap();
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let rc = {
        use aes_gcm::aead::KeyInit;
        aes_gcm::Aes256Gcm::new(&[7u8; 32].into())
    };

    let mut g = c.benchmark_group("seal-64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    let mut buf = data.clone();
    g.bench_function(
        "baseline: aws-lc-rs AES-256-GCM seal in place, one call",
        |b| {
            b.iter(|| {
                let tag = raw_key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([0; 12]),
                        Aad::empty(),
                        &mut buf,
                    )
                    .unwrap();
                let _ = black_box(tag);
            })
        },
    );
    g.bench_function(
        "reference: RustCrypto aes-gcm encrypt in place, one call",
        |b| {
            use aes_gcm::aead::AeadInPlace;
            b.iter(|| {
                let tag = rc
                    .encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut buf)
                    .unwrap();
                let _ = black_box(tag);
            })
        },
    );
    g.bench_function(
        "vault seal_to_vec (plaintext MAC pass + chunked AES-256-GCM)",
        |b| b.iter(|| black_box(seal_to_vec(&data, &key, &params).unwrap())),
    );
    let mut out = Vec::with_capacity(bundle.len());
    g.bench_function(
        "vault seal, streaming (plaintext MAC pass + chunked AES-256-GCM)",
        |b| {
            b.iter(|| {
                out.clear();
                seal(
                    &mut Cursor::new(&data),
                    &mut out,
                    &key,
                    &params,
                    &mut |_| {},
                )
                .unwrap();
            })
        },
    );
    g.finish();

    // Raw single-call ciphertexts for the decryption baselines.
    let mut raw_sealed = data.clone();
    let raw_tag = raw_key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut raw_sealed,
        )
        .unwrap();
    raw_sealed.extend_from_slice(raw_tag.as_ref());
    let mut rc_sealed = data.clone();
    let rc_tag = {
        use aes_gcm::aead::AeadInPlace;
        rc.encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut rc_sealed)
            .unwrap()
    };

    let mut g = c.benchmark_group("unseal-64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    g.bench_function(
        "baseline: aws-lc-rs AES-256-GCM open in place, one call",
        |b| {
            b.iter_batched_ref(
                || raw_sealed.clone(),
                |ct| {
                    let plain = raw_key
                        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), ct)
                        .unwrap();
                    black_box(plain.len());
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function(
        "reference: RustCrypto aes-gcm decrypt in place, one call",
        |b| {
            use aes_gcm::aead::AeadInPlace;
            b.iter_batched_ref(
                || rc_sealed.clone(),
                |ct| {
                    rc.decrypt_in_place_detached(&[0u8; 12].into(), b"", ct, &rc_tag)
                        .unwrap();
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function("vault unseal_in_place (the enclave's path)", |b| {
        b.iter_batched_ref(
            || bundle.clone(),
            |sealed| {
                black_box(unseal_in_place(sealed, &key, false).unwrap());
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("vault unseal_in_place + plaintext MAC check", |b| {
        b.iter_batched_ref(
            || bundle.clone(),
            |sealed| {
                black_box(unseal_in_place(sealed, &key, true).unwrap());
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function(
        "vault unseal, streaming (cloister unseal's path, no check)",
        |b| {
            b.iter(|| {
                out.clear();
                unseal(&mut bundle.as_slice(), &mut out, &key, false, &mut |_| {}).unwrap();
            })
        },
    );
    g.bench_function("vault unseal, streaming + plaintext MAC check", |b| {
        b.iter(|| {
            out.clear();
            unseal(&mut bundle.as_slice(), &mut out, &key, true, &mut |_| {}).unwrap();
        })
    });
    g.bench_function(
        "vault unseal_to_vec (allocates the plaintext each time)",
        |b| b.iter(|| black_box(unseal_to_vec(&bundle, &key, false).unwrap())),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
