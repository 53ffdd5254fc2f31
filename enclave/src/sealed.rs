//! Unsealing the bundles the enclave needs before it serves: for each, ask
//! the key broker for its key with fresh evidence, unseal the host's
//! ciphertext in memory, in place (never to a disk the host can read), and enforce
//! the release policy's minimum bundle version on the authenticated header.
//! Until every bundle is unsealed the enclave does not listen; failures are
//! logged with the broker's reason and retried with backoff.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use cloister_attestation::collect::EvidenceSource;
use cloister_attestation::ratls::Bindings;
use cloister_vault::kbs::client::{request_key, BrokerEndpoint};
use cloister_vault::{unseal_in_place, BundleHeader, VaultError, HEADER_LEN};

use crate::config::SealedConfig;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A bundle unsealed into enclave memory.
pub(crate) struct UnsealedBundle {
    /// Its name in the configuration.
    pub(crate) name: String,
    /// Its verified header.
    pub(crate) header: BundleHeader,
    /// The plaintext.
    pub(crate) bytes: Vec<u8>,
}

/// Pairs each configured bundle with the file the host supplied. A bundle
/// the host did not supply, or one the configuration does not name, is a
/// launch error (the host and the image disagree).
pub(crate) fn supplied(
    configured: &[SealedConfig],
    args: &[String],
) -> anyhow::Result<Vec<(SealedConfig, PathBuf)>> {
    let mut given = BTreeMap::new();
    for arg in args {
        let Some((name, path)) = arg.split_once('=') else {
            bail!("--sealed takes NAME=PATH, got {arg:?}");
        };
        if given.insert(name.to_owned(), PathBuf::from(path)).is_some() {
            bail!("--sealed {name} given twice");
        }
    }
    let mut out = Vec::new();
    for bundle in configured {
        let Some(path) = given.remove(&bundle.name) else {
            bail!(
                "the configuration needs sealed bundle {:?} but the host did not supply it (--sealed {}=PATH)",
                bundle.name,
                bundle.name
            );
        };
        out.push((bundle.clone(), path));
    }
    if let Some(extra) = given.keys().next() {
        bail!("the host supplied sealed bundle {extra:?}, which the configuration does not name");
    }
    Ok(out)
}

/// Unseals every bundle, retrying each failure with backoff until it
/// succeeds (or the process is stopped).
pub(crate) async fn unseal_all(
    broker: &BrokerEndpoint,
    bundles: &[(SealedConfig, PathBuf)],
    source: Arc<dyn EvidenceSource>,
    bindings: &Bindings,
) -> Vec<UnsealedBundle> {
    let mut out = Vec::with_capacity(bundles.len());
    for (config, path) in bundles {
        let mut backoff = MIN_BACKOFF;
        loop {
            match unseal_one(broker, config, path, source.clone(), bindings).await {
                Ok(bundle) => {
                    tracing::info!(
                        bundle = %config.name,
                        key_id = %bundle.header.key_id,
                        version = bundle.header.bundle_version,
                        bytes = bundle.bytes.len(),
                        "sealed bundle unsealed into enclave memory"
                    );
                    out.push(bundle);
                    break;
                }
                Err(e) => {
                    tracing::warn!(bundle = %config.name, error = %e, retry_in = ?backoff, "cannot unseal; serving nothing until it succeeds");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    out
}

async fn unseal_one(
    broker: &BrokerEndpoint,
    config: &SealedConfig,
    path: &Path,
    source: Arc<dyn EvidenceSource>,
    bindings: &Bindings,
) -> Result<UnsealedBundle, VaultError> {
    // The header is public: read it to send the broker (which authenticates
    // it under the key), and check the host supplied the bundle this
    // configuration names.
    let header = read_header(path)?;
    check_identity(config, &header)?;
    let released = request_key(broker, &header, source.as_ref(), bindings).await?;
    let path = path.to_path_buf();
    let (header, bytes) = tokio::task::spawn_blocking(move || {
        let mut file = File::open(&path)?;
        let len = file.metadata()?.len();
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(|_| {
                VaultError::InvalidParams("the bundle is larger than this enclave's memory".into())
            })?;
        file.read_to_end(&mut bytes)?;
        // Decrypted where it lies: one pass, no second copy. Every chunk's
        // tag authenticates it under the key and STREAM fixes their order
        // and end, so the plaintext MAC (a check against a faulty sealer,
        // which `cloister unseal` makes on the owner's side) is not
        // recomputed on this path.
        let header = unseal_in_place(&mut bytes, &released.key, false)?;
        Ok::<_, VaultError>((header, bytes))
    })
    .await
    .map_err(|_| VaultError::Crypto("unseal task failed"))??;
    // Judge the header that authenticated, not the one read first: the host
    // may have swapped the file in between.
    check_identity(config, &header)?;
    check_version(config, &header, released.min_bundle_version)?;
    Ok(UnsealedBundle {
        name: config.name.clone(),
        header,
        bytes,
    })
}

fn read_header(path: &Path) -> Result<BundleHeader, VaultError> {
    let mut raw = [0u8; HEADER_LEN];
    File::open(path)?.read_exact(&mut raw).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            VaultError::Malformed(format!(
                "{} is shorter than a bundle header",
                path.display()
            ))
        } else {
            e.into()
        }
    })?;
    BundleHeader::parse(&raw)
}

/// The enclave's own rollback check, on the header that authenticated: the
/// broker judged the version the enclave reported before it had the key.
fn check_version(
    config: &SealedConfig,
    header: &BundleHeader,
    min_bundle_version: u64,
) -> Result<(), VaultError> {
    if header.bundle_version < min_bundle_version {
        return Err(VaultError::ReleaseViolation(format!(
            "bundle {:?} is version {}, below the release policy's minimum {min_bundle_version}: refusing a rolled-back bundle",
            config.name, header.bundle_version
        )));
    }
    Ok(())
}

fn check_identity(config: &SealedConfig, header: &BundleHeader) -> Result<(), VaultError> {
    if header.key_id != config.key_id {
        return Err(VaultError::ReleaseViolation(format!(
            "the host supplied a bundle sealed under key {:?} for {:?}, which needs key {:?}",
            header.key_id, config.name, config.key_id
        )));
    }
    if header.kind != config.kind {
        return Err(VaultError::ReleaseViolation(format!(
            "bundle {:?} holds {}, the configuration expects {}",
            config.name,
            header.kind.as_str(),
            config.kind.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cloister_vault::{seal_to_vec, ContentKind, DataKey, SealParams};

    use super::*;

    fn header(key_id: &str, kind: ContentKind, version: u64) -> BundleHeader {
        let params = SealParams {
            key_id: key_id.into(),
            kind,
            bundle_version: version,
            chunk_log2: 12,
        };
        seal_to_vec(b"x", &DataKey::generate().unwrap(), &params)
            .unwrap()
            .0
    }

    fn model() -> SealedConfig {
        SealedConfig {
            name: "model".into(),
            key_id: "model-key".into(),
            kind: ContentKind::Model,
        }
    }

    #[test]
    fn the_authenticated_header_must_be_the_configured_bundle_at_the_minimum_version() {
        let good = header("model-key", ContentKind::Model, 3);
        check_identity(&model(), &good).unwrap();
        check_version(&model(), &good, 3).unwrap();
        let err = check_version(&model(), &good, 4).unwrap_err();
        assert!(
            err.to_string()
                .contains("below the release policy's minimum 4"),
            "{err}"
        );
        let other_key = header("other-key", ContentKind::Model, 3);
        assert!(matches!(
            check_identity(&model(), &other_key),
            Err(VaultError::ReleaseViolation(_))
        ));
        let data = header("model-key", ContentKind::Data, 3);
        let err = check_identity(&model(), &data).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds data, the configuration expects model"),
            "{err}"
        );
    }

    #[test]
    fn the_host_must_supply_exactly_the_configured_bundles() {
        let configured = [model()];
        let ok = supplied(&configured, &["model=/x/m.sealed".into()]).unwrap();
        assert_eq!(ok[0].1, PathBuf::from("/x/m.sealed"));
        for args in [
            vec![],
            vec!["model".to_owned()],
            vec!["model=/a".to_owned(), "model=/b".to_owned()],
            vec!["model=/a".to_owned(), "extra=/b".to_owned()],
        ] {
            assert!(supplied(&configured, &args).is_err(), "{args:?}");
        }
    }
}
