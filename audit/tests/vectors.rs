//! Interoperability: our Merkle tree and signed-note code against public
//! vectors from other implementations.
//!
//! Provenance (copied as data, with their sources):
//! - RFC 6962 tree: transparency-dev/merkle at commit
//!   417fb0c314750d94e53942e9f92e79b6d35915db, `testonly/constants.go`
//!   (`LeafInputs`, `RootHashes`), and `testdata/inclusion/{1,2,3,4}/happy-path.json`
//!   and `testdata/consistency/{1,2,3,4}/happy-path.json` (converted from
//!   base64 to hex; leaf indices 0-based as in those files).
//! - Signed-note key ID: golang/mod at commit
//!   fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db, `sumdb/note/note_test.go`
//!   (verifier keys `PeterNeumann+c74f20a3+…` and `EnochRoot+af0cfe78+…`).
//! - A real checkpoint signed by the Go checksum database: transparency-dev/formats
//!   at commit 0b850f1a7b4a5b70deeacac6535e4b8023809d21, `log/note_test.go`
//!   (`TestSumDBNoteParsing`); its key from golang/mod `gosumcheck/main.go`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use base64::Engine as _;
use cloister_audit::checkpoint::{key_id, SignedCheckpoint};
use cloister_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion, Hash,
};

const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex_text: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).unwrap();
    out
}

fn leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect()
}

#[test]
fn tree_heads_match_transparency_dev_for_every_size() {
    let leaves = leaves();
    for (size, expected) in ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(root(&leaves[..size])), *expected, "size {size}");
    }
}

#[test]
fn inclusion_proofs_match_transparency_dev() {
    let leaves = leaves();
    let cases: [(usize, usize, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, path) in cases {
        let expected: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        assert_eq!(inclusion_proof(index, &leaves[..size]).unwrap(), expected);
        verify_inclusion(
            index as u64,
            size as u64,
            &leaves[index],
            &expected,
            &h(ROOTS[size]),
        )
        .unwrap();
    }
}

#[test]
fn consistency_proofs_match_transparency_dev() {
    let leaves = leaves();
    let cases: [(usize, usize, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, path) in cases {
        let expected: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        assert_eq!(consistency_proof(old, &leaves[..new]).unwrap(), expected);
        verify_consistency(
            old as u64,
            new as u64,
            &h(ROOTS[old]),
            &h(ROOTS[new]),
            &expected,
        )
        .unwrap();
    }
}

/// The Ed25519 public key inside a Go `note` verifier key
/// (`name+keyid+base64(0x01 || key)`).
fn verifier(vkey: &str) -> (String, [u8; 4], [u8; 32]) {
    let mut parts = vkey.splitn(3, '+');
    let name = parts.next().unwrap().to_owned();
    let id: [u8; 4] = hex::decode(parts.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(parts.next().unwrap())
        .unwrap();
    assert_eq!(key[0], 0x01, "Ed25519 signature type");
    (name, id, key[1..].try_into().unwrap())
}

#[test]
fn key_ids_match_go_sumdb_note() {
    for vkey in [
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
        "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
    ] {
        let (name, id, key) = verifier(vkey);
        assert_eq!(key_id(&name, &key), id, "{name}");
    }
}

#[test]
fn a_real_checkpoint_of_the_go_checksum_database_parses_and_verifies() {
    let note = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n\u{2014} sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";
    let (name, _, key) =
        verifier("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8");
    let parsed = SignedCheckpoint::parse(note).unwrap();
    assert_eq!(parsed.checkpoint.origin, "go.sum database tree");
    assert_eq!(parsed.checkpoint.size, 6_476_701);
    assert_eq!(
        hex::encode(parsed.checkpoint.root),
        "99bf102d022cd19d323f90acb6aea0ba3f3ba1759e0bd80433ca158a49a6f569"
    );
    parsed.verify(&name, &key).unwrap();
    // One size more, same signature: refused.
    let forged = SignedCheckpoint::parse(&note.replace("6476701", "6476702")).unwrap();
    assert!(forged.verify(&name, &key).is_err());
}
