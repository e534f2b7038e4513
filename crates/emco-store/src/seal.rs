//! Secrets at rest (a logical cloud user's private key, Git tokens): sealed with AES-256-GCM
//! under the hub's secret key before they reach the store, so neither a copy of the redb file
//! nor an etcd snapshot reveals them.
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
