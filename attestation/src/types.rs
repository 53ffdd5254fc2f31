//! Fixed-size byte newtypes shared by the evidence formats, so a measurement
//! can never be passed where a chip ID is expected. They print and serialise
//! as lowercase hex.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

macro_rules! byte_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|e| Error::InvalidPolicy {
                    detail: format!(
                        "{} must be {} hex digits: {e} (got {:?})",
                        stringify!($name),
                        2 * $len,
                        s
                    ),
                })?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

byte_newtype!(
    /// A 48-byte SHA-384 register: SNP MEASUREMENT, TDX MRTD and RTMRs,
    /// MRCONFIGID, MROWNER.
    Measurement,
    48
);
byte_newtype!(
    /// The 64 bytes of caller data a report binds (nonce, key digest).
    ReportData,
    64
);
byte_newtype!(
    /// An SNP CHIP_ID: the unique per-processor identifier (on Turin, 8
    /// significant bytes followed by zeros).
    ChipId,
    64
);
byte_newtype!(
    /// SNP HOST_DATA: 32 bytes the host supplied at launch.
    HostData,
    32
);
byte_newtype!(
    /// An Intel platform family identifier (FMSPC).
    Fmspc,
    6
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_length_check() {
        let m: Measurement = "ab".repeat(48).parse().unwrap();
        assert_eq!(m.to_string(), "ab".repeat(48));
        assert!(matches!(
            "ab".parse::<Measurement>(),
            Err(Error::InvalidPolicy { .. })
        ));
    }
}
