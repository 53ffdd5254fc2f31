//! The simulated TEE. **INSECURE: it proves nothing.**
//!
//! `sim` lets the whole system (launch, RA-TLS, queries, restarts) run on a
//! machine without SEV-SNP or TDX. Its evidence carries the same claims as an
//! SNP report (launch measurement, host data, report data, chip identity,
//! debug flag) so that every code path downstream of verification is the one
//! real evidence takes. But the signing key is an ordinary software key held
//! by the very process it vouches for: anyone can mint sim evidence for any
//! measurement. Verifiers therefore reject it unless the appraisal policy
//! sets `allow_simulated = true`, and everything that displays it says
//! INSECURE.
//!
//! Wire format, version 1, little-endian, 320 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `CLSIMEV\0` |
//! | 8 | 2 | version = 1 |
//! | 10 | 2 | flags: bit 0 debug, others zero |
//! | 12 | 4 | guest SVN |
//! | 16 | 48 | launch measurement ([`sim_measurement`]) |
//! | 64 | 32 | host data |
//! | 96 | 64 | report data |
//! | 160 | 64 | chip id = SHA-512(public key) |
//! | 224 | 32 | Ed25519 public key |
//! | 256 | 64 | Ed25519 signature over bytes `[0, 256)` |

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha384, Sha512};

use crate::bytes::Cursor;
use crate::error::{Error, Result};
use crate::types::{ChipId, HostData, Measurement, ReportData};

/// First bytes of simulated evidence; cannot be mistaken for an SNP report
/// (a small little-endian version) or a DCAP quote (version 4 or 5).
pub const SIM_MAGIC: [u8; 8] = *b"CLSIMEV\0";
/// The only version this crate writes and reads.
pub const SIM_VERSION: u16 = 1;
/// Length of version-1 simulated evidence.
pub const SIM_EVIDENCE_LEN: usize = 320;
const SIGNED_LEN: usize = 256;
const FLAG_DEBUG: u16 = 1;

/// Simulated evidence, parsed but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvidence {
    /// Format version.
    pub version: u16,
    /// The "TEE" runs in debug mode.
    pub debug: bool,
    /// Guest security version number.
    pub guest_svn: u32,
    /// Launch measurement of the enclave binary and its configuration.
    pub measurement: Measurement,
    /// Data the launcher supplied.
    pub host_data: HostData,
    /// Data the enclave asked to bind (key digests, nonces).
    pub report_data: ReportData,
    /// Identity of the simulated "chip": SHA-512 of its public key.
    pub chip_id: ChipId,
    /// The Ed25519 key that signed this evidence.
    pub public_key: [u8; 32],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
    raw: Vec<u8>,
}

impl SimEvidence {
    /// Whether `bytes` start like simulated evidence.
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.starts_with(&SIM_MAGIC)
    }

    /// Parses version-1 simulated evidence, strictly: exact length, known
    /// version, reserved flag bits zero.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const STRUCTURE: &str = "simulated evidence";
        let mut c = Cursor::new(bytes, STRUCTURE);
        if c.array::<8>()? != SIM_MAGIC {
            return Err(Error::InvalidField {
                structure: STRUCTURE,
                field: "magic",
                detail: "not CLSIMEV".into(),
            });
        }
        let version = c.u16()?;
        if version != SIM_VERSION {
            return Err(Error::UnsupportedVersion {
                structure: STRUCTURE,
                found: u32::from(version),
                supported: "1",
            });
        }
        let flags = c.u16()?;
        if flags & !FLAG_DEBUG != 0 {
            return Err(Error::ReservedNotZero {
                structure: STRUCTURE,
                offset: 10,
            });
        }
        let evidence = Self {
            version,
            debug: flags & FLAG_DEBUG != 0,
            guest_svn: c.u32()?,
            measurement: Measurement(c.array()?),
            host_data: HostData(c.array()?),
            report_data: ReportData(c.array()?),
            chip_id: ChipId(c.array()?),
            public_key: c.array()?,
            signature: c.array()?,
            raw: bytes.to_vec(),
        };
        c.finish()?;
        Ok(evidence)
    }

    /// The bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Checks the signature and that the chip id names the signing key.
    /// Says nothing about *who* holds the key: that is why it is insecure.
    pub fn verify(self) -> Result<VerifiedSimEvidence> {
        let expected_chip: [u8; 64] = Sha512::digest(self.public_key).into();
        if expected_chip != self.chip_id.0 {
            return Err(Error::InvalidField {
                structure: "simulated evidence",
                field: "chip_id",
                detail: "is not SHA-512 of the signing key".into(),
            });
        }
        let signed = self.raw.get(..SIGNED_LEN).ok_or(Error::Truncated {
            structure: "simulated evidence",
            needed: SIGNED_LEN,
            found: self.raw.len(),
        })?;
        UnparsedPublicKey::new(&signature::ED25519, &self.public_key)
            .verify(signed, &self.signature)
            .map_err(|_| Error::SignatureInvalid {
                what: "simulated evidence (INSECURE)".into(),
            })?;
        Ok(VerifiedSimEvidence(self))
    }
}

/// Simulated evidence whose signature verified. Still INSECURE: the key is
/// not rooted in any hardware.
#[derive(Debug, Clone)]
pub struct VerifiedSimEvidence(SimEvidence);

impl VerifiedSimEvidence {
    /// The verified evidence.
    pub fn evidence(&self) -> &SimEvidence {
        &self.0
    }
}

/// The launch measurement the simulated TEE reports: SHA-384 over a domain
/// label, then SHA-384 of the enclave binary and SHA-384 of its configuration.
/// `cloister measure` computes the same value from the files, so an operator
/// can write the reference value into a policy before launching.
pub fn sim_measurement(binary_sha384: &[u8; 48], config: &[u8]) -> Measurement {
    let mut h = Sha384::new();
    h.update(b"cloister/sim/launch-measurement/v1\0");
    h.update(binary_sha384);
    h.update(Sha384::digest(config));
    Measurement(h.finalize().into())
}

/// The simulated "hardware": a software Ed25519 key, generated fresh for each
/// launch, plus the launch-time claims it signs into every report.
#[derive(Debug)]
pub struct SimTee {
    key: Ed25519KeyPair,
    measurement: Measurement,
    host_data: HostData,
    debug: bool,
    guest_svn: u32,
}

impl SimTee {
    /// A new simulated TEE with a fresh key for an enclave launched with
    /// `measurement`.
    pub fn new(measurement: Measurement, host_data: HostData) -> Result<Self> {
        let key = Ed25519KeyPair::generate().map_err(|_| Error::InvalidField {
            structure: "simulated TEE",
            field: "key",
            detail: "Ed25519 key generation failed".into(),
        })?;
        Ok(Self {
            key,
            measurement,
            host_data,
            debug: false,
            guest_svn: 0,
        })
    }

    /// Marks the simulated TEE as running in debug mode (for tests of the
    /// policy's debug check).
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The launch measurement this TEE reports.
    pub fn measurement(&self) -> Measurement {
        self.measurement
    }

    /// Signs evidence binding `report_data`.
    pub fn report(&self, report_data: &ReportData) -> Vec<u8> {
        let public_key = self.key.public_key().as_ref();
        let mut out = Vec::with_capacity(SIM_EVIDENCE_LEN);
        out.extend_from_slice(&SIM_MAGIC);
        out.extend_from_slice(&SIM_VERSION.to_le_bytes());
        let flags = if self.debug { FLAG_DEBUG } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.guest_svn.to_le_bytes());
        out.extend_from_slice(self.measurement.as_bytes());
        out.extend_from_slice(self.host_data.as_bytes());
        out.extend_from_slice(report_data.as_bytes());
        out.extend_from_slice(&Sha512::digest(public_key));
        out.extend_from_slice(public_key);
        let signature = self.key.sign(&out);
        out.extend_from_slice(signature.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tee() -> SimTee {
        SimTee::new(Measurement([7; 48]), HostData([1; 32])).unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = tee().report(&ReportData([9; 64]));
        assert_eq!(bytes.len(), SIM_EVIDENCE_LEN);
        let v = SimEvidence::parse(&bytes).unwrap().verify().unwrap();
        assert_eq!(v.evidence().measurement, Measurement([7; 48]));
        assert_eq!(v.evidence().report_data, ReportData([9; 64]));
        assert!(!v.evidence().debug);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let bytes = tee().report(&ReportData([9; 64]));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let outcome = SimEvidence::parse(&bad).and_then(SimEvidence::verify);
            assert!(outcome.is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn wrong_length_and_version_are_rejected() {
        let bytes = tee().report(&ReportData([0; 64]));
        assert!(matches!(
            SimEvidence::parse(&bytes[..100]),
            Err(Error::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            SimEvidence::parse(&long),
            Err(Error::TrailingData { .. })
        ));
        let mut v2 = bytes;
        v2[8] = 2;
        assert!(matches!(
            SimEvidence::parse(&v2),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn measurement_depends_on_binary_and_config() {
        let a = sim_measurement(&[1; 48], b"listen = 1");
        assert_ne!(a, sim_measurement(&[2; 48], b"listen = 1"));
        assert_ne!(a, sim_measurement(&[1; 48], b"listen = 2"));
        assert_eq!(a, sim_measurement(&[1; 48], b"listen = 1"));
    }
}
