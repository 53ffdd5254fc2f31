//! The RFC 6962 / RFC 9162 Merkle tree over the log's records: leaf and
//! node hashing with their one-byte domain prefixes, the tree head, audit
//! paths (inclusion proofs) and consistency proofs, and their verification.
//!
//! The algorithms are those of RFC 9162 §2.1 (MTH, PATH, PROOF and the
//! verification procedures of §2.1.3.2 and §2.1.4.2), written for a slice
//! of leaf hashes. Computing a proof is O(n) in the tree size; verifying
//! one is O(log n). The writer keeps only a [`Frontier`] (O(log n) hashes).

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the head of a tree with no leaves.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf or size is outside the tree.
    #[error("{what} is outside a tree of {size} leaves")]
    OutOfRange {
        /// What was out of range.
        what: String,
        /// The tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for its position.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The proof leads to another root.
    #[error("the proof leads to root {computed}, not the checkpoint's {expected}")]
    RootMismatch {
        /// The root the proof computes, hex.
        computed: String,
        /// The root it should compute, hex.
        expected: String,
    },
}

/// PATH(index, leaves): the audit path of one leaf.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::OutOfRange {
            what: format!("leaf {index}"),
            size: leaves.len() as u64,
        });
    }
    let mut path = Vec::new();
    path_into(index, leaves, &mut path);
    Ok(path)
}

fn path_into(index: usize, leaves: &[Hash], path: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = leaves.split_at(split(leaves.len()));
    if index < left.len() {
        path_into(index, left, path);
        path.push(root(right));
    } else {
        path_into(index - left.len(), right, path);
        path.push(root(left));
    }
}

/// PROOF(old_size, leaves): that the tree of `old_size` leaves is a prefix
/// of the tree over all of `leaves`.
pub fn consistency_proof(old_size: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if old_size > leaves.len() {
        return Err(ProofError::OutOfRange {
            what: format!("size {old_size}"),
            size: leaves.len() as u64,
        });
    }
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof_into(old_size, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof_into(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof_into(m, left, whole, proof);
        proof.push(root(right));
    } else {
        subproof_into(m - k, right, false, proof);
        proof.push(root(left));
    }
}

fn hex32(h: &Hash) -> String {
    hex::encode(h)
}

/// RFC 9162 §2.1.3.2: does `path` prove `leaf` is leaf `index` of the tree
/// of `size` leaves whose head is `expected_root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange {
            what: format!("leaf {index}"),
            size,
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != expected_root {
        return Err(ProofError::RootMismatch {
            computed: hex32(&r),
            expected: hex32(expected_root),
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `old_size` leaves with
/// head `old_root` is a prefix of the tree of `new_size` leaves with head
/// `new_root`?
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange {
            what: format!("size {old_size}"),
            size: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch {
                computed: hex32(old_root),
                expected: hex32(new_root),
            })
        };
    }
    if old_size == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root {
        return Err(ProofError::RootMismatch {
            computed: hex32(&fr),
            expected: hex32(old_root),
        });
    }
    if &sr != new_root {
        return Err(ProofError::RootMismatch {
            computed: hex32(&sr),
            expected: hex32(new_root),
        });
    }
    Ok(())
}

/// The right edge of a growing tree: the heads of its perfect subtrees,
/// largest first. Enough to append and to compute the head, in O(log n).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, head) of each perfect subtree, left to right.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// Adds a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn the_frontier_agrees_with_mth_at_every_size() {
        let all = leaves(70);
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), root(&[]));
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.root(), root(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_altered_one_does() {
        let all = leaves(40);
        for size in 1..=all.len() {
            let tree = &all[..size];
            let head = root(tree);
            for index in 0..size {
                let path = inclusion_proof(index, tree).unwrap();
                verify_inclusion(index as u64, size as u64, &tree[index], &path, &head).unwrap();
                // Another leaf, another index, a shortened or altered path.
                let other = leaf_hash(b"not in the tree");
                assert!(verify_inclusion(index as u64, size as u64, &other, &path, &head).is_err());
                if size > 1 {
                    let wrong = (index + 1) % size;
                    assert!(verify_inclusion(
                        wrong as u64,
                        size as u64,
                        &tree[index],
                        &path,
                        &head
                    )
                    .is_err());
                    let mut bent = path.clone();
                    bent[0][0] ^= 1;
                    assert!(verify_inclusion(
                        index as u64,
                        size as u64,
                        &tree[index],
                        &bent,
                        &head
                    )
                    .is_err());
                    assert!(verify_inclusion(
                        index as u64,
                        size as u64,
                        &tree[index],
                        &path[1..],
                        &head
                    )
                    .is_err());
                }
            }
        }
        assert!(inclusion_proof(3, &all[..3]).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        let all = leaves(33);
        for new in 1..=all.len() {
            let new_root = root(&all[..new]);
            for old in 0..=new {
                let proof = consistency_proof(old, &all[..new]).unwrap();
                let old_root = root(&all[..old]);
                verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof)
                    .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
                if old > 0 && old < new {
                    // A history where one of the first `old` leaves differs.
                    let mut forked = all[..new].to_vec();
                    forked[old - 1] = leaf_hash(b"rewritten");
                    let forked_root = root(&forked);
                    assert!(verify_consistency(
                        old as u64,
                        new as u64,
                        &old_root,
                        &forked_root,
                        &proof
                    )
                    .is_err());
                    let forked_proof = consistency_proof(old, &forked).unwrap();
                    assert!(verify_consistency(
                        old as u64,
                        new as u64,
                        &old_root,
                        &forked_root,
                        &forked_proof
                    )
                    .is_err());
                }
            }
        }
    }
}
