//! The AMD roots of trust, pinned by the SHA-256 of each ARK's
//! SubjectPublicKeyInfo, and AMD's published ASK/ASVK intermediates.
//!
//! Source of the certificates: AMD's Key Distribution Service
//! (`https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/cert_chain` and
//! `.../vlek/v1/.../cert_chain`), as snapshotted verbatim in
//! google/go-sev-guest `verify/trust/ask_ark_*.pem` at commit
//! af1c107a648f47253da23a9de7a7c82ec073cfdb (Apache-2.0); the same
//! certificates ship in virtee/sev `src/certs/snp/builtin/`. The fingerprints
//! below were computed from those files with
//! `openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256sum`, and a
//! test recomputes them from the embedded PEM.
//!
//! Only the ARK is a trust anchor. The embedded intermediates are a
//! convenience for offline verification; they are verified against the ARK
//! like any intermediate a caller supplies.

use super::report::Product;

/// SPKI SHA-256 of each AMD Root Key, hex.
pub const PINNED_ARKS: [(Product, &str); 3] = [
    // ARK-Milan, serial 0x010000, valid 2020-10-22..2045-10-22.
    (
        Product::Milan,
        "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
    ),
    // ARK-Genoa, serial 0x020000, valid 2022-01-26..2047-01-26.
    (
        Product::Genoa,
        "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
    ),
    // ARK-Turin, serial 0x030000, valid 2023-05-15..2048-05-15.
    (
        Product::Turin,
        "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
    ),
];

/// The product whose ARK has this SPKI fingerprint, if any.
pub(crate) fn product_for_ark(spki_sha256: &[u8; 32]) -> Option<Product> {
    let hex = hex::encode(spki_sha256);
    PINNED_ARKS
        .iter()
        .find(|(_, pin)| *pin == hex)
        .map(|(product, _)| *product)
}

/// The pinned fingerprints, for display (`cloister verify --help`, docs).
pub fn pinned_ark_fingerprints() -> impl Iterator<Item = (Product, &'static str)> {
    PINNED_ARKS.iter().copied()
}

/// AMD's KDS `cert_chain` responses (intermediate then ARK, PEM) for VCEK and
/// VLEK chains of each product.
pub(crate) const EMBEDDED_CHAINS: [&[u8]; 6] = [
    include_bytes!("../roots/amd_milan_vcek_chain.pem"),
    include_bytes!("../roots/amd_genoa_vcek_chain.pem"),
    include_bytes!("../roots/amd_turin_vcek_chain.pem"),
    include_bytes!("../roots/amd_milan_vlek_chain.pem"),
    include_bytes!("../roots/amd_genoa_vlek_chain.pem"),
    include_bytes!("../roots/amd_turin_vlek_chain.pem"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::{parse_pem_chain, Certificate};

    #[test]
    fn embedded_arks_match_the_pins_and_sign_their_intermediates() {
        let mut seen = Vec::new();
        for chain in EMBEDDED_CHAINS {
            let ders = parse_pem_chain("embedded", chain).unwrap();
            assert_eq!(ders.len(), 2);
            let ask = Certificate::from_der("ASK", &ders[0]).unwrap();
            let ark = Certificate::from_der("ARK", &ders[1]).unwrap();
            let product = product_for_ark(&ark.spki_sha256()).expect("ARK is pinned");
            assert!(ark.subject().contains(&format!("ARK-{product}")));
            ark.verify_issued_by(&ark).unwrap();
            ask.verify_issued_by(&ark).unwrap();
            seen.push(product);
        }
        for (product, _) in PINNED_ARKS {
            assert_eq!(seen.iter().filter(|p| **p == product).count(), 2);
        }
    }
}
