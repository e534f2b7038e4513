//! Secrets at rest (a logical cloud user's private key, Git tokens): sealed with AES-256-GCM
//! under the hub's secret key before they reach the store, so neither a copy of the redb file
//! nor an etcd snapshot reveals them.
//!
//! Cluster sync objects (`spec.kv`, one-key maps of strings) keep their secret values
//! ([`SECRET_KV_KEYS`]) as `sealed:` + a sealed value ([`seal_kv_document`]); answers show them
//! as [`REDACTED`] ([`redact_kv_document`]); the deploy path reads them with [`open_kv`].
//!
//! A sealed value is text: `v1:` then base64 of the 12-byte random nonce followed by the
//! ciphertext and its tag. The caller's `context` (say, the resource's key) is bound to it as
//! associated data, so a value copied under another resource does not open.
//!
//! The key is 32 random bytes kept in a file outside the store (`emco serve
//! --secret-key-file`; by default beside the embedded store), written with mode 0600 when first
//! needed. Every hub sharing one etcd must be given the same file.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "v1:";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("secret key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sealed value does not open with this hub's secret key (another key, or altered)")]
    Unopenable,
    #[error("no randomness available")]
    Random,
    /// A secret was sent back as [`REDACTED`] but nothing is stored for it to keep.
    #[error(
        "{0}: \"{REDACTED}\" keeps the stored secret, and there is none; send the value itself"
    )]
    NothingToKeep(String),
    /// A secret's value is not text.
    #[error("{0}: a secret value must be a string")]
    NotText(String),
}

/// Seals and opens values with the hub's secret key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with `key` (32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::KeyFile {
            path: "(in memory)".into(),
            reason: format!("a key is {KEY_LEN} bytes, not {}", key.len()),
        })?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        })
    }

    /// The key in `path` (base64 of 32 bytes), created (mode 0600) when the file is missing.
    pub fn from_key_file(path: &Path) -> Result<Self, SealError> {
        let failed = |reason: String| SealError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0_u8; KEY_LEN];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| SealError::Random)?;
                let text = STANDARD.encode(key);
                write_private(path, &text).map_err(|e| failed(e.to_string()))?;
                tracing::info!(path = %path.display(), "created the hub's secret key");
                text
            }
            Err(error) => return Err(failed(error.to_string())),
        };
        let key = STANDARD
            .decode(text.trim())
            .map_err(|_| failed("not base64".into()))?;
        if key.len() != KEY_LEN {
            return Err(failed(format!("{} bytes; a key is {KEY_LEN}", key.len())));
        }
        Self::new(&key)
    }

    /// Seals `plaintext` for `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0_u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens what [`Sealer::seal`] sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let encoded = sealed
            .strip_prefix(PREFIX)
            .ok_or(SealError::Malformed("no version prefix"))?;
        let mut bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SealError::Malformed("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed("too short"));
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes)
            .map_err(|_| SealError::Malformed("bad nonce"))?;
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| SealError::Unopenable)?;
        Ok(opened.to_vec())
    }
}

/// Marks a stored secret value of a cluster sync object: the rest is a [`Sealer::seal`] output.
pub const SEALED_PREFIX: &str = "sealed:";
/// What every answer shows in place of a secret value; sent back on PUT it keeps the stored one.
pub const REDACTED: &str = "********";
/// The keys of a cluster sync object's `spec.kv` whose values are secrets (case-sensitive).
pub const SECRET_KV_KEYS: &[&str] = &["gitToken", "clientSecret", "password", "token"];

/// Whether `key` of a cluster sync object's `spec.kv` holds a secret.
pub fn is_secret_kv_key(key: &str) -> bool {
    SECRET_KV_KEYS.contains(&key)
}

/// The associated data a sync object's secret is sealed for.
fn kv_context(provider: &str, name: &str, key: &str) -> String {
    format!("clusterSyncObject/{provider}/{name}/{key}")
}

/// Every pair of `doc["spec"]["kv"]` (one-key maps, as upstream; a map with several keys
/// gives each), in order, mutable.
fn kv_pairs_mut(
    doc: &mut serde_json::Value,
) -> impl Iterator<Item = (&String, &mut serde_json::Value)> {
    doc.pointer_mut("/spec/kv")
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|map| map.iter_mut())
}

fn kv_pairs(doc: &serde_json::Value) -> impl Iterator<Item = (&String, &serde_json::Value)> {
    doc.pointer("/spec/kv")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|map| map.iter())
}

/// Seals every secret value of a cluster sync object's `spec.kv` (see [`SECRET_KV_KEYS`]) as
/// `sealed:` + [`Sealer::seal`] for `clusterSyncObject/{provider}/{name}/{key}`. A value equal to
/// [`REDACTED`] (a client sending back what GET gave) keeps the sealed value of that key in
/// `previous` (the stored document); without one it is [`SealError::NothingToKeep`].
pub fn seal_kv_document(
    sealer: &Sealer,
    provider: &str,
    name: &str,
    doc: &mut serde_json::Value,
    previous: Option<&serde_json::Value>,
) -> Result<(), SealError> {
    for (key, value) in kv_pairs_mut(doc) {
        if !is_secret_kv_key(key) {
            continue;
        }
        let serde_json::Value::String(text) = value else {
            return Err(SealError::NotText(key.clone()));
        };
        let kept = if text.as_str() == REDACTED {
            let stored = previous
                .into_iter()
                .flat_map(kv_pairs)
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.as_str())
                .ok_or_else(|| SealError::NothingToKeep(key.clone()))?;
            if stored.starts_with(SEALED_PREFIX) {
                *text = stored.to_owned();
                continue;
            }
            // Stored in clear before secrets were sealed: sealed now.
            stored.to_owned()
        } else {
            std::mem::take(text)
        };
        let context = kv_context(provider, name, key);
        *text = format!("{SEALED_PREFIX}{}", sealer.seal(&context, kept.as_bytes())?);
    }
    Ok(())
}

/// Every pair of a stored cluster sync object's `spec.kv`, in order, with its secrets opened.
/// Values without [`SEALED_PREFIX`] (documents stored before secrets were sealed) pass through
/// as they are; a value that is not a string comes as its JSON text.
pub fn open_kv(
    sealer: &Sealer,
    provider: &str,
    name: &str,
    doc: &serde_json::Value,
) -> Result<Vec<(String, String)>, SealError> {
    kv_pairs(doc)
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let opened = match text.strip_prefix(SEALED_PREFIX) {
                Some(sealed) if is_secret_kv_key(key) => {
                    let bytes = sealer.open(&kv_context(provider, name, key), sealed)?;
                    String::from_utf8(bytes).map_err(|_| SealError::Malformed("not UTF-8"))?
                }
                _ => text,
            };
            Ok((key.clone(), opened))
        })
        .collect()
}

/// Replaces every secret value of a cluster sync object's `spec.kv` by [`REDACTED`].
pub fn redact_kv_document(doc: &mut serde_json::Value) {
    for (key, value) in kv_pairs_mut(doc) {
        if is_secret_kv_key(key) {
            *value = serde_json::Value::String(REDACTED.to_owned());
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile_dir();
        let path = dir.join("secret.key");
        let sealer = Sealer::from_key_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = sealer
            .seal("lc/proj/lc1", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("PRIVATE"));
        assert_ne!(
            sealed,
            sealer
                .seal("lc/proj/lc1", b"-----BEGIN PRIVATE KEY-----")
                .unwrap()
        );
        // The same file gives the same key.
        let again = Sealer::from_key_file(&path).unwrap();
        assert_eq!(
            again.open("lc/proj/lc1", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(matches!(
            again.open("lc/proj/lc2", &sealed),
            Err(SealError::Unopenable)
        ));
        let other = Sealer::new(&[7; 32]).unwrap();
        assert!(matches!(
            other.open("lc/proj/lc1", &sealed),
            Err(SealError::Unopenable)
        ));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert!(again.open("lc/proj/lc1", &altered).is_err());
        std::fs::write(dir.join("short.key"), STANDARD.encode([1_u8; 16])).unwrap();
        let error = Sealer::from_key_file(&dir.join("short.key")).unwrap_err();
        assert!(error.to_string().contains("16 bytes"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn sync_object(token: &str) -> serde_json::Value {
        serde_json::json!({"metadata": {"name": "so"}, "spec": {"kv": [
            {"userName": "u"}, {"gitToken": token}, {"repoName": "r"},
            {"branch": "main"}, {"url": "https://git.example/r"}
        ]}})
    }

    #[test]
    fn sync_object_secrets_are_sealed_kept_opened_and_redacted() {
        let sealer = Sealer::new(&[3; 32]).unwrap();
        let mut doc = sync_object("tok-123");
        seal_kv_document(&sealer, "prov", "so", &mut doc, None).unwrap();
        let stored = doc.to_string();
        assert!(!stored.contains("tok-123"), "{stored}");
        let sealed = doc["spec"]["kv"][1]["gitToken"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
        assert_eq!(doc["spec"]["kv"][0]["userName"], "u");
        assert_eq!(doc["spec"]["kv"][4]["url"], "https://git.example/r");
        let pairs = open_kv(&sealer, "prov", "so", &doc).unwrap();
        let expected: Vec<(String, String)> = [
            ("userName", "u"),
            ("gitToken", "tok-123"),
            ("repoName", "r"),
            ("branch", "main"),
            ("url", "https://git.example/r"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(pairs, expected);
        // Bound to the object: copied under another name it does not open.
        assert!(matches!(
            open_kv(&sealer, "prov", "other", &doc),
            Err(SealError::Unopenable)
        ));

        // REDACTED keeps the stored sealed value; a new value is sealed anew.
        let mut again = sync_object(REDACTED);
        seal_kv_document(&sealer, "prov", "so", &mut again, Some(&doc)).unwrap();
        assert_eq!(again["spec"]["kv"][1]["gitToken"], sealed.as_str());
        let mut changed = sync_object("tok-456");
        seal_kv_document(&sealer, "prov", "so", &mut changed, Some(&doc)).unwrap();
        assert_eq!(
            open_kv(&sealer, "prov", "so", &changed).unwrap()[1].1,
            "tok-456"
        );

        // REDACTED with nothing stored names the key.
        let mut nothing = sync_object(REDACTED);
        let error = seal_kv_document(&sealer, "prov", "so", &mut nothing, None).unwrap_err();
        assert!(matches!(&error, SealError::NothingToKeep(k) if k == "gitToken"));
        assert!(error.to_string().contains("gitToken"), "{error}");
        let without = serde_json::json!({"spec": {"kv": [{"url": "u"}]}});
        let mut nothing = sync_object(REDACTED);
        assert!(seal_kv_document(&sealer, "prov", "so", &mut nothing, Some(&without)).is_err());

        // A non-string secret is refused.
        let mut number = serde_json::json!({"spec": {"kv": [{"password": 7}]}});
        assert!(matches!(
            seal_kv_document(&sealer, "prov", "so", &mut number, None),
            Err(SealError::NotText(k)) if k == "password"
        ));

        let mut shown = doc.clone();
        redact_kv_document(&mut shown);
        assert_eq!(shown["spec"]["kv"][1]["gitToken"], REDACTED);
        assert_eq!(shown["spec"]["kv"][0]["userName"], "u");
        assert!(!shown.to_string().contains("sealed:"));
    }

    #[test]
    fn every_secret_key_and_only_those_is_sealed() {
        let sealer = Sealer::new(&[5; 32]).unwrap();
        let mut doc = serde_json::json!({"spec": {"kv": [
            {"gitToken": "a"}, {"clientSecret": "b"}, {"password": "c"}, {"token": "d"},
            {"Token": "e"}, {"gitUser": "f"}
        ]}});
        seal_kv_document(&sealer, "p", "n", &mut doc, None).unwrap();
        let kv = doc["spec"]["kv"].as_array().unwrap();
        for item in &kv[..4] {
            let value = item.as_object().unwrap().values().next().unwrap();
            assert!(value.as_str().unwrap().starts_with(SEALED_PREFIX), "{item}");
        }
        assert_eq!(kv[4]["Token"], "e", "keys are case-sensitive");
        assert_eq!(kv[5]["gitUser"], "f");
        let opened: Vec<String> = open_kv(&sealer, "p", "n", &doc)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(opened, ["a", "b", "c", "d", "e", "f"]);
        let mut shown = doc.clone();
        redact_kv_document(&mut shown);
        assert_eq!(shown["spec"]["kv"][3]["token"], REDACTED);
        assert_eq!(shown["spec"]["kv"][4]["Token"], "e");
    }

    #[test]
    fn documents_stored_before_sealing_still_work() {
        let sealer = Sealer::new(&[9; 32]).unwrap();
        let legacy = sync_object("clear-token");
        // Read as they are.
        assert_eq!(
            open_kv(&sealer, "prov", "so", &legacy).unwrap()[1],
            ("gitToken".to_owned(), "clear-token".to_owned())
        );
        // Shown redacted.
        let mut shown = legacy.clone();
        redact_kv_document(&mut shown);
        assert_eq!(shown["spec"]["kv"][1]["gitToken"], REDACTED);
        // Sent back redacted, the clear value is sealed now.
        let mut again = sync_object(REDACTED);
        seal_kv_document(&sealer, "prov", "so", &mut again, Some(&legacy)).unwrap();
        assert!(!again.to_string().contains("clear-token"));
        assert_eq!(
            open_kv(&sealer, "prov", "so", &again).unwrap()[1].1,
            "clear-token"
        );
        // No kv at all: nothing to do.
        let mut empty = serde_json::json!({"metadata": {"name": "so"}});
        seal_kv_document(&sealer, "prov", "so", &mut empty, None).unwrap();
        assert!(open_kv(&sealer, "prov", "so", &empty).unwrap().is_empty());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("emco-seal-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
