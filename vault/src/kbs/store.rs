//! The broker's keys at rest: `keys.json` in the store directory, each data
//! key AES-256-GCM-sealed under the operator's master key, with everything
//! else about the key (its ID, creation and revocation times, release
//! policy) as associated data. Editing a policy or un-revoking a key on
//! disk makes the key unusable rather than releasable.
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the
//! directory) and serialised by an exclusive lock on `keys.lock`, so
//! `cloister kbs add-key` can run while the broker serves.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::bundle::DataKey;
use crate::error::VaultError;
use crate::kbs::policy::ReleasePolicy;

const KEYS_FILE: &str = "keys.json";
const LOCK_FILE: &str = "keys.lock";
const STORE_VERSION: u32 = 1;
const AT_REST_LABEL: &[u8] = b"cloister/kbs/key-at-rest/v1\0";

/// The operator's master key: 64 hex digits in a file only the broker reads.
pub struct MasterKey(LessSafeKey);

impl core::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads a master key file.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        let store_error = |detail: String| VaultError::Store {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| store_error(format!("cannot read the master key: {e}")))?;
        let key = DataKey::from_hex(&text)
            .map_err(|_| store_error("a master key file holds 64 hex digits".into()))?;
        Self::from_key(&key)
    }

    /// Creates a new master key file (mode 0600, and its directory if
    /// needed); refuses to overwrite one.
    pub fn generate(path: &Path) -> Result<Self, VaultError> {
        let key = DataKey::generate()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| VaultError::Store {
                path: path.display().to_string(),
                detail: format!("cannot create the master key: {e}"),
            })?;
        file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
        file.sync_all()?;
        Self::from_key(&key)
    }

    fn from_key(key: &DataKey) -> Result<Self, VaultError> {
        UnboundKey::new(&AES_256_GCM, key.as_bytes())
            .map(|k| Self(LessSafeKey::new(k)))
            .map_err(|_| VaultError::Crypto("AES-256-GCM key"))
    }
}

/// One key's record on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    key_id: String,
    created: String,
    revoked: Option<String>,
    release_policy: String,
    /// nonce ‖ ciphertext ‖ tag, hex.
    sealed_key: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    keys: Vec<StoredKey>,
}

/// A key's metadata, verified under the master key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key ID.
    pub key_id: String,
    /// When it was added, RFC 3339.
    pub created: String,
    /// When it was revoked, RFC 3339.
    pub revoked: Option<String>,
    /// The release policy, as written.
    pub policy_text: String,
    /// The release policy, parsed.
    pub policy: ReleasePolicy,
}

/// The broker's key store.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    master: MasterKey,
}

impl KeyStore {
    /// Opens (or, on first write, creates) the store in `dir`.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Self, VaultError> {
        std::fs::create_dir_all(dir).map_err(|e| VaultError::Store {
            path: dir.display().to_string(),
            detail: format!("cannot create the store directory: {e}"),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            master,
        })
    }

    /// Every key, each checked to open under the master key.
    pub fn list(&self) -> Result<Vec<KeyEntry>, VaultError> {
        let file = self.read()?;
        file.keys
            .iter()
            .map(|stored| self.open_entry(stored).map(|(entry, _)| entry))
            .collect()
    }

    /// The key `key_id` and its entry, or `None` if the store has no such key.
    pub fn get(&self, key_id: &str) -> Result<Option<(KeyEntry, DataKey)>, VaultError> {
        let file = self.read()?;
        file.keys
            .iter()
            .find(|k| k.key_id == key_id)
            .map(|stored| self.open_entry(stored))
            .transpose()
    }

    /// Adds a key with its release policy (validated first). Refuses an
    /// existing key ID: a key is never silently replaced.
    pub fn add(
        &self,
        key_id: &str,
        key: &DataKey,
        policy_text: &str,
        now: OffsetDateTime,
    ) -> Result<KeyEntry, VaultError> {
        check_key_id(key_id)?;
        let policy = ReleasePolicy::from_toml(policy_text)?;
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if file.keys.iter().any(|k| k.key_id == key_id) {
            return Err(self.error(format!(
                "key {key_id:?} already exists; revoke it and add a new key ID"
            )));
        }
        let created = rfc3339(now);
        let stored = self.seal_entry(key_id, &created, None, policy_text, key)?;
        file.keys.push(stored);
        self.write(&file)?;
        Ok(KeyEntry {
            key_id: key_id.to_owned(),
            created,
            revoked: None,
            policy_text: policy_text.to_owned(),
            policy,
        })
    }

    /// Revokes a key: the broker refuses every later release of it.
    pub fn revoke(&self, key_id: &str, now: OffsetDateTime) -> Result<KeyEntry, VaultError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let Some(slot) = file.keys.iter_mut().find(|k| k.key_id == key_id) else {
            return Err(self.error(format!("no key {key_id:?}")));
        };
        let (mut entry, key) = self.open_entry(slot)?;
        if entry.revoked.is_some() {
            return Ok(entry);
        }
        let revoked = rfc3339(now);
        *slot = self.seal_entry(
            key_id,
            &entry.created,
            Some(&revoked),
            &entry.policy_text,
            &key,
        )?;
        self.write(&file)?;
        entry.revoked = Some(revoked);
        Ok(entry)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(KEYS_FILE)
    }

    fn error(&self, detail: String) -> VaultError {
        VaultError::Store {
            path: self.path().display().to_string(),
            detail,
        }
    }

    fn lock(&self) -> Result<File, VaultError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.error(format!("cannot lock {}: {e}", path.display())))?;
        Ok(file)
    }

    fn read(&self) -> Result<StoreFile, VaultError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreFile {
                    version: STORE_VERSION,
                    keys: Vec::new(),
                })
            }
            Err(e) => return Err(self.error(format!("cannot read: {e}"))),
        };
        let file: StoreFile =
            serde_json::from_str(&text).map_err(|e| self.error(format!("not a key store: {e}")))?;
        if file.version != STORE_VERSION {
            return Err(self.error(format!(
                "store version {} is not supported (supported: {STORE_VERSION})",
                file.version
            )));
        }
        Ok(file)
    }

    fn write(&self, file: &StoreFile) -> Result<(), VaultError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{KEYS_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(file)
            .map_err(|e| self.error(format!("cannot encode: {e}")))?;
        {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(&json)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn seal_entry(
        &self,
        key_id: &str,
        created: &str,
        revoked: Option<&str>,
        policy_text: &str,
        key: &DataKey,
    ) -> Result<StoredKey, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| VaultError::Crypto("no randomness"))?;
        let aad = at_rest_aad(key_id, created, revoked, policy_text);
        let mut sealed = key.as_bytes().to_vec();
        self.master
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut sealed,
            )
            .map_err(|_| VaultError::Crypto("AES-256-GCM seal"))?;
        Ok(StoredKey {
            key_id: key_id.to_owned(),
            created: created.to_owned(),
            revoked: revoked.map(str::to_owned),
            release_policy: policy_text.to_owned(),
            sealed_key: hex::encode([nonce.as_slice(), &sealed].concat()),
        })
    }

    fn open_entry(&self, stored: &StoredKey) -> Result<(KeyEntry, DataKey), VaultError> {
        let bad = || {
            self.error(format!(
                "key {:?} does not open under this master key: wrong master key, or its record (policy, revocation) was modified",
                stored.key_id
            ))
        };
        let mut bytes = hex::decode(&stored.sealed_key).map_err(|_| bad())?;
        if bytes.len() != NONCE_LEN + 32 + AES_256_GCM.tag_len() {
            return Err(bad());
        }
        let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| bad())?;
        let aad = at_rest_aad(
            &stored.key_id,
            &stored.created,
            stored.revoked.as_deref(),
            &stored.release_policy,
        );
        let plain = self
            .master
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), sealed)
            .map_err(|_| bad())?;
        let key: [u8; 32] = (&*plain).try_into().map_err(|_| bad())?;
        let key = DataKey::from_bytes(key);
        zeroize::Zeroize::zeroize(&mut bytes);
        let policy = ReleasePolicy::from_toml(&stored.release_policy)?;
        Ok((
            KeyEntry {
                key_id: stored.key_id.clone(),
                created: stored.created.clone(),
                revoked: stored.revoked.clone(),
                policy_text: stored.release_policy.clone(),
                policy,
            },
            key,
        ))
    }
}

/// Key IDs follow the bundle header's rule: 1 to 64 printable ASCII
/// characters, no spaces.
fn check_key_id(key_id: &str) -> Result<(), VaultError> {
    if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(VaultError::InvalidParams(
            "key ID must be 1 to 64 printable ASCII characters without spaces".into(),
        ));
    }
    Ok(())
}

fn at_rest_aad(key_id: &str, created: &str, revoked: Option<&str>, policy: &str) -> Vec<u8> {
    let mut aad = AT_REST_LABEL.to_vec();
    for part in [key_id, created, revoked.unwrap_or(""), policy] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad.push(u8::from(revoked.is_some()));
    aad
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const POLICY: &str = "min_bundle_version = 1\npolicy_digests = \"any\"\n[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = \"any\"\n";

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cloister-store-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn add_get_revoke_and_tampering() {
        let d = dir("basic");
        let master_path = d.join("master.key");
        let store =
            KeyStore::open(&d.join("store"), MasterKey::generate(&master_path).unwrap()).unwrap();
        let key = DataKey::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        store.add("model-key", &key, POLICY, now).unwrap();
        assert!(matches!(
            store.add("model-key", &key, POLICY, now),
            Err(VaultError::Store { .. })
        ));
        assert!(matches!(
            store.add("bad id", &key, POLICY, now),
            Err(VaultError::InvalidParams(_))
        ));
        assert!(matches!(
            store.add("k2", &key, "nonsense", now),
            Err(VaultError::Policy(_))
        ));
        let (entry, got) = store.get("model-key").unwrap().unwrap();
        assert_eq!(got.as_bytes(), key.as_bytes());
        assert!(entry.revoked.is_none());
        assert!(store.get("other").unwrap().is_none());

        // The data key is not on disk in clear.
        let on_disk = std::fs::read_to_string(d.join("store/keys.json")).unwrap();
        assert!(!on_disk.contains(&key.to_hex()));

        // Another master key opens nothing.
        let other_master = d.join("other.key");
        let other = KeyStore::open(
            &d.join("store"),
            MasterKey::generate(&other_master).unwrap(),
        )
        .unwrap();
        assert!(matches!(other.list(), Err(VaultError::Store { .. })));

        // Revocation sticks, and un-revoking it on disk breaks the key.
        store.revoke("model-key", now).unwrap();
        assert!(store.get("model-key").unwrap().unwrap().0.revoked.is_some());
        let mut file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("store/keys.json")).unwrap())
                .unwrap();
        file["keys"][0]["revoked"] = serde_json::Value::Null;
        std::fs::write(d.join("store/keys.json"), file.to_string()).unwrap();
        assert!(matches!(
            store.get("model-key"),
            Err(VaultError::Store { .. })
        ));

        // So does loosening its policy.
        let store2 =
            KeyStore::open(&d.join("store2"), MasterKey::load(&master_path).unwrap()).unwrap();
        store2.add("k", &key, POLICY, now).unwrap();
        let path = d.join("store2/keys.json");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("min_bundle_version = 1", "min_bundle_version = 0"),
        )
        .unwrap();
        assert!(matches!(store2.get("k"), Err(VaultError::Store { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn master_key_files() {
        let d = dir("master");
        let path = d.join("m.key");
        MasterKey::generate(&path).unwrap();
        assert!(
            matches!(MasterKey::generate(&path), Err(VaultError::Store { .. })),
            "never overwritten"
        );
        MasterKey::load(&path).unwrap();
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            MasterKey::load(&path),
            Err(VaultError::Store { .. })
        ));
        assert!(matches!(
            MasterKey::load(&d.join("missing")),
            Err(VaultError::Store { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
