//! `--srtp-key`, `--srtp-key-file` and `--srtp-suite`, identical for both binaries: the
//! pre-shared SRTP master key (RFC 4568 inline form, base64 of key ‖ salt; see
//! [`patchcord_common::srtp_key`]) and its suite.
//!
//! A key file holds the same base64 text (a trailing newline is fine). Like an SSH private
//! key, it is refused when other users may read it (any permission for "others"): the key
//! is the whole of the stream's secrecy. Group read is allowed, so that a service user can
//! read a key owned by root (`chown root:patchcord key; chmod 640 key`).

use std::path::{Path, PathBuf};

use patchcord_common::srtp_key::{MasterKey, Suite};

#[derive(clap::Args, Debug, Clone)]
pub struct SrtpArgs {
    /// Protect the stream with SRTP/SRTCP using this master key: base64 of key ‖ salt
    /// (30 bytes for AES_CM_128_HMAC_SHA1_80, 28 for AEAD_AES_128_GCM), the RFC 4568
    /// inline form that ffmpeg's -srtp_out_params takes. Make one with
    /// `head -c 30 /dev/urandom | base64`. Plain RTP is then refused.
    #[arg(long, value_name = "BASE64", conflicts_with = "srtp_key_file")]
    pub srtp_key: Option<String>,
    /// Read the SRTP master key (the same base64 text) from FILE, which other users must
    /// not be able to read (chmod 600 or 640).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub srtp_key_file: Option<PathBuf>,
    /// SRTP suite: AES_CM_128_HMAC_SHA1_80 (what ffmpeg speaks) or AEAD_AES_128_GCM.
    #[arg(long, value_name = "SUITE", default_value = "AES_CM_128_HMAC_SHA1_80", value_parser = parse_suite)]
    pub srtp_suite: Suite,
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    s.parse()
        .map_err(|e: patchcord_common::srtp_key::KeyError| e.to_string())
}

impl SrtpArgs {
    /// The key the flags give, if any; an error says what is wrong with it.
    pub fn master_key(&self) -> Result<Option<MasterKey>, String> {
        let text = match (&self.srtp_key, &self.srtp_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(path)) => read_key_file(path)?,
            (None, None) => return Ok(None),
        };
        MasterKey::from_base64(self.srtp_suite, &text)
            .map(Some)
            .map_err(|e| format!("{e} (--srtp-suite {})", self.srtp_suite))
    }

    /// Whether a key was given at all.
    pub fn given(&self) -> bool {
        self.srtp_key.is_some() || self.srtp_key_file.is_some()
    }
}

fn read_key_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("SRTP key file '{shown}': {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "SRTP key file '{shown}' is open to other users (mode {mode:03o}); \
             run `chmod 600 {shown}` (or 640 for a service's group)"
        ));
    }
    // a key is 40 characters: anything much longer is not a key file
    if meta.len() > 4096 {
        return Err(format!(
            "SRTP key file '{shown}' is {} bytes; a key is 40 characters of base64",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("SRTP key file '{shown}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    const KEY: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC";

    fn args(key: Option<&str>, file: Option<PathBuf>, suite: Suite) -> SrtpArgs {
        SrtpArgs {
            srtp_key: key.map(str::to_string),
            srtp_key_file: file,
            srtp_suite: suite,
        }
    }

    #[test]
    fn key_from_flag_and_file() {
        assert_eq!(args(None, None, Suite::default()).master_key(), Ok(None));
        let k = args(Some(KEY), None, Suite::default())
            .master_key()
            .unwrap()
            .unwrap();
        assert_eq!(k.to_base64(), KEY);
        let e = args(Some(KEY), None, Suite::AeadAes128Gcm)
            .master_key()
            .unwrap_err();
        assert!(e.contains("is 30 bytes; AEAD_AES_128_GCM takes 28"), "{e}");

        let dir = std::env::temp_dir().join(format!("patchcord-srtp-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let from_file = args(None, Some(path.clone()), Suite::default())
            .master_key()
            .unwrap();
        assert_eq!(from_file, Some(k));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = args(None, Some(path.clone()), Suite::default())
            .master_key()
            .unwrap_err();
        assert!(e.contains("open to other users (mode 644)"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        let e = args(None, Some(path.clone()), Suite::default())
            .master_key()
            .unwrap_err();
        assert!(e.contains("not valid base64"), "{e}");
        let e = args(None, Some(dir.join("missing")), Suite::default())
            .master_key()
            .unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
