//! Caller identity from a bearer JWT signed by the hospital's identity
//! provider (IdP).
//!
//! The enclave trusts exactly the IdP keys in its measured configuration
//! (JWKS per issuer). A token must name one of those keys by `kid`, be signed
//! with EdDSA (Ed25519) or ES256, carry the configured audience, the key's
//! issuer, a subject, a role and a purpose of use, and be within its validity
//! window at the enclave's clock (with a small leeway). Everything else is a
//! 401 with the specific reason.
//!
//! Purpose of use follows HL7 v3 `PurposeOfUse` codes (TREAT, ETREAT,
//! HPAYMT, HOPERAT, HRESCH, PUBHLTH, …); the code is carried, not judged:
//! judging it is the policy modules' job.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Largest token accepted (a JWT with a few claims is ~400 bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims Cloister reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerClaims {
    /// Issuer: the IdP.
    pub iss: String,
    /// Subject: the user or service.
    pub sub: String,
    /// Audience: must include the enclave's configured audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The caller's role, e.g. "clinician", "scribe", "researcher".
    pub role: String,
    /// HL7 v3 PurposeOfUse code, e.g. "TREAT".
    pub purpose_of_use: String,
    /// The patient in context (e.g. a FHIR Patient id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// A caller whose token verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The IdP that vouched for the caller.
    pub issuer: String,
    /// Subject.
    pub subject: String,
    /// Role.
    pub role: String,
    /// Purpose of use.
    pub purpose_of_use: String,
    /// Patient context.
    pub patient: Option<String>,
    /// When the token expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// Which identity providers the enclave trusts (part of its measured config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The audience tokens must carry.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u32,
    /// Trusted issuers and their keys.
    pub issuers: Vec<IssuerConfig>,
}

fn default_leeway() -> u32 {
    30
}

/// One trusted IdP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Its public keys, as a JWKS document (JSON text).
    pub jwks: String,
}

/// A configuration the enclave must refuse to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity configuration: {0}")]
pub struct ConfigError(String);

/// Why a token was refused (the reason a 401 carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token: send Authorization: Bearer <JWT from your identity provider>")]
    Missing,
    /// The token is not a JWT.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// Not EdDSA or ES256.
    #[error("token algorithm {0} is not accepted (EdDSA or ES256)")]
    UnsupportedAlgorithm(String),
    /// No `kid`, or one no trusted IdP has.
    #[error("token is signed by an unknown key {0:?}: not one of the trusted identity providers'")]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// The wrong issuer or audience, or a claim is missing or empty.
    #[error("token claims are not acceptable: {0}")]
    Claims(String),
    /// Past `exp`.
    #[error("token expired at {0}")]
    Expired(String),
    /// Before `nbf`.
    #[error("token is not valid before {0}")]
    NotYetValid(String),
}

struct TrustedKey {
    issuer: String,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies caller tokens against the configured IdPs.
pub struct TokenVerifier {
    audience: String,
    leeway: i64,
    keys: HashMap<String, TrustedKey>,
}

impl core::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("audience", &self.audience)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    /// Loads the IdP keys. Every key must have a unique `kid` and be an
    /// Ed25519 or P-256 key; anything else is a configuration error, not a
    /// key that is silently skipped.
    pub fn new(config: &IdentityConfig) -> Result<Self, ConfigError> {
        if config.issuers.is_empty() {
            return Err(ConfigError("no trusted issuers".into()));
        }
        let mut keys = HashMap::new();
        for issuer in &config.issuers {
            let set: JwkSet = serde_json::from_str(&issuer.jwks)
                .map_err(|e| ConfigError(format!("JWKS of {}: {e}", issuer.issuer)))?;
            for jwk in &set.keys {
                let kid =
                    jwk.common.key_id.clone().ok_or_else(|| {
                        ConfigError(format!("a key of {} has no kid", issuer.issuer))
                    })?;
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec)
                        if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    _ => {
                        return Err(ConfigError(format!(
                        "key {kid} of {}: only Ed25519 (EdDSA) and P-256 (ES256) keys are accepted",
                        issuer.issuer
                    )))
                    }
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| ConfigError(format!("key {kid} of {}: {e}", issuer.issuer)))?;
                let trusted = TrustedKey {
                    issuer: issuer.issuer.clone(),
                    algorithm,
                    key,
                };
                if keys.insert(kid.clone(), trusted).is_some() {
                    return Err(ConfigError(format!("kid {kid} appears twice")));
                }
            }
        }
        Ok(Self {
            audience: config.audience.clone(),
            leeway: i64::from(config.leeway_seconds),
            keys,
        })
    }

    /// Verifies `token` at `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Caller, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!(
                "{} bytes is longer than {MAX_TOKEN_LEN}",
                token.len()
            )));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "{:?}",
                header.alg
            )));
        }
        let trusted = header
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
        if header.alg != trusted.algorithm {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "{:?} with a {:?} key",
                header.alg, trusted.algorithm
            )));
        }
        // Signature, issuer and audience here; time below, at our `now`.
        let mut validation = Validation::new(trusted.algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<CallerClaims>(token, &trusted.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    TokenError::Claims(format!("issuer is not {}", trusted.issuer))
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    TokenError::Claims(format!("audience is not {}", self.audience))
                }
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;
        let at = |secs: i64| {
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| TokenError::Claims(format!("time out of range: {e}")))
        };
        let expires = at(claims.exp)?;
        let now_s = now.unix_timestamp();
        if now_s > claims.exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired(rfc3339(expires)));
        }
        if let Some(nbf) = claims.nbf {
            if now_s.saturating_add(self.leeway) < nbf {
                return Err(TokenError::NotYetValid(rfc3339(at(nbf)?)));
            }
        }
        for (name, value) in [
            ("sub", &claims.sub),
            ("role", &claims.role),
            ("purpose_of_use", &claims.purpose_of_use),
        ] {
            if value.trim().is_empty() {
                return Err(TokenError::Claims(format!("{name} is empty")));
            }
        }
        Ok(Caller {
            issuer: claims.iss,
            subject: claims.sub,
            role: claims.role,
            purpose_of_use: claims.purpose_of_use,
            patient: claims.patient,
            expires,
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A development identity provider: an Ed25519 key that mints tokens, for
/// the demo and for tests. A hospital uses its own IdP; this one exists so
/// that the system can be exercised end to end without one.
pub struct DevIdp {
    issuer: String,
    kid: String,
    pkcs8: Vec<u8>,
    public_key: Vec<u8>,
}

impl core::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish()
    }
}

impl DevIdp {
    /// A new IdP with a fresh key.
    pub fn generate(issuer: &str, kid: &str) -> Result<Self, ConfigError> {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| ConfigError("Ed25519 key generation failed".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| ConfigError("Ed25519 key generation failed".into()))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            kid: kid.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The issuer name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its public key as a JWKS document, for the enclave configuration.
    pub fn jwks(&self) -> String {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(&self.public_key),
            }]
        })
        .to_string()
    }

    /// Signs `claims` (whatever they say: tests mint bad tokens too).
    pub fn mint(&self, claims: &CallerClaims) -> Result<String, ConfigError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8))
            .map_err(|e| ConfigError(format!("cannot sign token: {e}")))
    }

    /// Claims for `subject` valid for `ttl` from `now`.
    pub fn claims(
        &self,
        audience: &str,
        subject: &str,
        role: &str,
        purpose_of_use: &str,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> CallerClaims {
        CallerClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            exp: (now + ttl).unix_timestamp(),
            nbf: Some(now.unix_timestamp()),
            iat: Some(now.unix_timestamp()),
            role: role.to_owned(),
            purpose_of_use: purpose_of_use.to_owned(),
            patient: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn setup() -> (DevIdp, TokenVerifier) {
        let idp = DevIdp::generate("https://idp.test", "k1").unwrap();
        let verifier = TokenVerifier::new(&IdentityConfig {
            audience: "cloister".into(),
            leeway_seconds: 30,
            issuers: vec![IssuerConfig {
                issuer: idp.issuer().into(),
                jwks: idp.jwks(),
            }],
        })
        .unwrap();
        (idp, verifier)
    }

    #[test]
    fn accepts_a_good_token() {
        let (idp, v) = setup();
        let now = OffsetDateTime::now_utc();
        let mut claims = idp.claims(
            "cloister",
            "dr.who",
            "clinician",
            "TREAT",
            now,
            Duration::minutes(5),
        );
        claims.patient = Some("Patient/123".into());
        let caller = v.verify(&idp.mint(&claims).unwrap(), now).unwrap();
        assert_eq!(caller.subject, "dr.who");
        assert_eq!(caller.patient.as_deref(), Some("Patient/123"));
    }

    #[test]
    fn refuses_each_kind_of_bad_token() {
        let (idp, v) = setup();
        let now = OffsetDateTime::now_utc();
        let good = idp.claims(
            "cloister",
            "s",
            "clinician",
            "TREAT",
            now,
            Duration::minutes(5),
        );
        let mint = |c: &CallerClaims| idp.mint(c).unwrap();

        let expired = CallerClaims {
            exp: (now - Duration::minutes(5)).unix_timestamp(),
            ..good.clone()
        };
        assert!(matches!(
            v.verify(&mint(&expired), now),
            Err(TokenError::Expired(_))
        ));
        let early = CallerClaims {
            nbf: Some((now + Duration::minutes(5)).unix_timestamp()),
            ..good.clone()
        };
        assert!(matches!(
            v.verify(&mint(&early), now),
            Err(TokenError::NotYetValid(_))
        ));
        let aud = CallerClaims {
            aud: "other".into(),
            ..good.clone()
        };
        assert!(matches!(
            v.verify(&mint(&aud), now),
            Err(TokenError::Claims(_))
        ));
        let iss = CallerClaims {
            iss: "https://evil".into(),
            ..good.clone()
        };
        assert!(matches!(
            v.verify(&mint(&iss), now),
            Err(TokenError::Claims(_))
        ));
        let role = CallerClaims {
            role: " ".into(),
            ..good.clone()
        };
        assert!(matches!(
            v.verify(&mint(&role), now),
            Err(TokenError::Claims(_))
        ));

        let stranger = DevIdp::generate("https://idp.test", "k1").unwrap();
        assert_eq!(
            v.verify(&stranger.mint(&good).unwrap(), now),
            Err(TokenError::BadSignature)
        );
        let other_kid = DevIdp::generate("https://idp.test", "k2").unwrap();
        assert!(matches!(
            v.verify(&other_kid.mint(&good).unwrap(), now),
            Err(TokenError::UnknownKey(_))
        ));

        let token = mint(&good);
        let mut parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        parts[0] = &none_header;
        assert!(v.verify(&parts.join("."), now).is_err());
        assert!(matches!(
            v.verify("not a token", now),
            Err(TokenError::Malformed(_))
        ));
    }
    #[test]
    fn es256_keys_work_and_cannot_be_used_as_eddsa() {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "ec1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let v = TokenVerifier::new(&IdentityConfig {
            audience: "cloister".into(),
            leeway_seconds: 0,
            issuers: vec![IssuerConfig {
                issuer: "https://ec.test".into(),
                jwks: jwks.to_string(),
            }],
        })
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let claims = CallerClaims {
            iss: "https://ec.test".into(),
            sub: "scribe-service".into(),
            aud: "cloister".into(),
            exp: (now + Duration::minutes(5)).unix_timestamp(),
            nbf: None,
            iat: None,
            role: "scribe".into(),
            purpose_of_use: "TREAT".into(),
            patient: None,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec1".into());
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref()))
                .unwrap();
        assert_eq!(v.verify(&token, now).unwrap().role, "scribe");

        // The same kid under an EdDSA header is refused before any signature check.
        let ed = DevIdp::generate("https://ec.test", "ec1").unwrap();
        let mut forged_claims = claims.clone();
        forged_claims.sub = "intruder".into();
        let forged = ed.mint(&forged_claims).unwrap();
        assert!(matches!(
            v.verify(&forged, now),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
    }
}
