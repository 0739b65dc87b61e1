//! The SRTP master key a sender and its receivers share, written the way RFC 4568 writes
//! an inline key: base64 of the master key followed by the master salt. The same string
//! works everywhere:
//!
//! - patchcord: `--srtp-key KEY` (or `--srtp-key-file`), and `a=crypto:1 SUITE inline:KEY`
//!   in an SDP description;
//! - ffmpeg: `-srtp_out_params KEY` / `-srtp_in_params KEY` with the suite
//!   `AES_CM_128_HMAC_SHA1_80`;
//! - GStreamer `srtpenc key=…` / `srtpdec` caps `srtp-key=(buffer)…`: the same bytes in
//!   hex ([`MasterKey::to_hex`]).
//!
//! | suite | cipher and tag | key + salt | base64 |
//! |---|---|---|---|
//! | `AES_CM_128_HMAC_SHA1_80` (RFC 3711, ffmpeg's) | AES-128 counter mode, 80-bit HMAC-SHA1 | 16 + 14 = 30 bytes | 40 characters |
//! | `AEAD_AES_128_GCM` (RFC 7714) | AES-128-GCM, 16-byte tag | 16 + 12 = 28 bytes | 40 characters, one `=` |
//!
//! Make one with `head -c 30 /dev/urandom | base64` (28 bytes for GCM). Parsing accepts an
//! `inline:` prefix and a `|lifetime` after the key (ignored); a master key identifier
//! (`|1:4`, MKI) is refused: patchcord keeps one key per stream and sends no MKI.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The longest key + salt of the suites here (AES-CM: 30 bytes).
const MAX_KEY_SALT_LEN: usize = 30;

/// An SRTP protection profile patchcord speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suite {
    /// RFC 3711's default, and the one ffmpeg speaks.
    #[default]
    AesCm128HmacSha1_80,
    /// RFC 7714: AES-128 in GCM, authentication and encryption in one pass.
    AeadAes128Gcm,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm];

    /// The name RFC 4568 / RFC 7714 give it (`a=crypto`, ffmpeg's `-srtp_*_suite`).
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn master_key_len(self) -> usize {
        16
    }

    pub fn master_salt_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 14,
            Suite::AeadAes128Gcm => 12,
        }
    }

    /// Bytes SRTP adds to an RTP packet (the authentication tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// Bytes SRTCP adds to an RTCP packet: E flag + index (4), and the tag.
    pub fn rtcp_overhead(self) -> usize {
        4 + self.rtp_overhead()
    }

    pub fn key_salt_len(self) -> usize {
        self.master_key_len() + self.master_salt_len()
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Suite {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Suite::ALL
            .into_iter()
            .find(|suite| suite.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| KeyError::UnknownSuite(s.to_string()))
    }
}

/// Why a key or a suite was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unknown SRTP suite '{0}' (known: AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM)")]
    UnknownSuite(String),
    #[error("the SRTP key is not valid base64: {0}")]
    Base64(String),
    #[error(
        "the SRTP key is {got} bytes; {suite} takes {want} (master key {key} + salt {salt}): \
         make one with `head -c {want} /dev/urandom | base64`"
    )]
    Length {
        suite: Suite,
        got: usize,
        want: usize,
        key: usize,
        salt: usize,
    },
    #[error("the SRTP key has a master key identifier (MKI, '|{0}'); patchcord uses none")]
    Mki(String),
}

/// A master key and salt for one suite.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    suite: Suite,
    key_salt: [u8; MAX_KEY_SALT_LEN],
}

impl fmt::Debug for MasterKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, …)", self.suite)
    }
}

impl MasterKey {
    /// From raw key ‖ salt bytes.
    pub fn new(suite: Suite, key_salt: &[u8]) -> Result<Self, KeyError> {
        let want = suite.key_salt_len();
        if key_salt.len() != want {
            return Err(KeyError::Length {
                suite,
                got: key_salt.len(),
                want,
                key: suite.master_key_len(),
                salt: suite.master_salt_len(),
            });
        }
        let mut k = [0; MAX_KEY_SALT_LEN];
        k[..want].copy_from_slice(key_salt);
        Ok(MasterKey { suite, key_salt: k })
    }

    /// From the RFC 4568 inline form: `[inline:]BASE64[|lifetime]`. Surrounding white
    /// space (a key file's newline) is ignored.
    pub fn from_base64(suite: Suite, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let text = text.strip_prefix("inline:").unwrap_or(text);
        let mut parts = text.split('|');
        let b64 = parts.next().unwrap_or_default().trim();
        for p in parts {
            if p.contains(':') {
                return Err(KeyError::Mki(p.to_string()));
            }
        }
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        MasterKey::new(suite, &bytes)
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn master_key(&self) -> &[u8] {
        &self.key_salt[..self.suite.master_key_len()]
    }

    pub fn master_salt(&self) -> &[u8] {
        &self.key_salt[self.suite.master_key_len()..self.suite.key_salt_len()]
    }

    /// Key ‖ salt in base64: what `--srtp-key`, `a=crypto` and ffmpeg take.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.key_salt[..self.suite.key_salt_len()])
    }

    /// Key ‖ salt in hex: what GStreamer's `srtpenc key=` and `srtp-key=(buffer)` take.
    pub fn to_hex(&self) -> String {
        self.key_salt[..self.suite.key_salt_len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The value of an SDP `a=crypto` attribute (RFC 4568 §9.1): `1 SUITE inline:KEY`.
    pub fn crypto_attribute(&self) -> String {
        format!("1 {} inline:{}", self.suite.name(), self.to_base64())
    }

    /// Read an `a=crypto` value: `TAG SUITE inline:KEY[|…] [session params]`.
    pub fn from_crypto_attribute(value: &str) -> Result<Self, KeyError> {
        let mut words = value.split_whitespace();
        let _tag = words.next();
        let suite: Suite = words.next().unwrap_or_default().parse()?;
        // several keys are joined with ';' (RFC 4568 §9.2): the first is the one in use
        let key = words
            .next()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default();
        MasterKey::from_base64(suite, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3711 B.2's master key and salt.
    const RFC_KEY: [u8; 30] = [
        0xE1, 0xF9, 0x7A, 0x0D, 0x3E, 0x01, 0x8B, 0xE0, 0xD6, 0x4F, 0xA3, 0x2C, 0x06, 0xDE, 0x41, 0x39, 0x0E,
        0xC6, 0x75, 0xAD, 0x49, 0x8A, 0xFE, 0xEB, 0xB6, 0x96, 0x0B, 0x3A, 0xAB, 0xE6,
    ];

    #[test]
    fn base64_round_trip_and_split() {
        let k = MasterKey::new(Suite::AesCm128HmacSha1_80, &RFC_KEY).unwrap();
        let b64 = k.to_base64();
        assert_eq!(b64.len(), 40);
        assert_eq!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &b64).unwrap(),
            k
        );
        assert_eq!(k.master_key(), &RFC_KEY[..16]);
        assert_eq!(k.master_salt(), &RFC_KEY[16..]);
        assert_eq!(&k.to_hex()[..8], "e1f97a0d");
        assert_eq!(k.to_hex().len(), 60);
        // a key file's newline, the inline: prefix, a lifetime
        for text in [
            format!("{b64}\n"),
            format!("inline:{b64}"),
            format!("inline:{b64}|2^31"),
        ] {
            assert_eq!(
                MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &text).unwrap(),
                k
            );
        }
        let gcm = MasterKey::new(Suite::AeadAes128Gcm, &RFC_KEY[..28]).unwrap();
        assert_eq!(gcm.master_salt().len(), 12);
        assert!(gcm.to_base64().ends_with('='), "{}", gcm.to_base64());
        assert_eq!(
            MasterKey::from_base64(Suite::AeadAes128Gcm, &gcm.to_base64()).unwrap(),
            gcm
        );
        assert_eq!(format!("{k:?}"), "MasterKey(AES_CM_128_HMAC_SHA1_80, …)");
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let e = MasterKey::from_base64(Suite::AesCm128HmacSha1_80, "not base64!").unwrap_err();
        assert!(matches!(e, KeyError::Base64(_)), "{e}");
        // 28 bytes is a GCM key, not an AES-CM one
        let gcm = STANDARD.encode(&RFC_KEY[..28]);
        let e = MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &gcm).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the SRTP key is 28 bytes; AES_CM_128_HMAC_SHA1_80 takes 30 (master key 16 + salt 14): \
             make one with `head -c 30 /dev/urandom | base64`"
        );
        let cm = STANDARD.encode(RFC_KEY);
        assert!(matches!(
            MasterKey::from_base64(Suite::AeadAes128Gcm, &cm),
            Err(KeyError::Length {
                got: 30,
                want: 28,
                ..
            })
        ));
        assert!(matches!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &format!("{cm}|2^20|1:4")),
            Err(KeyError::Mki(_))
        ));
        assert!(matches!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, ""),
            Err(KeyError::Length { got: 0, .. })
        ));
        assert!(matches!(
            "AES_CM_128_HMAC_SHA1_32".parse::<Suite>(),
            Err(KeyError::UnknownSuite(_))
        ));
        assert_eq!("aead_aes_128_gcm".parse::<Suite>(), Ok(Suite::AeadAes128Gcm));
    }

    #[test]
    fn crypto_attribute_round_trip() {
        let k = MasterKey::new(Suite::AesCm128HmacSha1_80, &RFC_KEY).unwrap();
        let a = k.crypto_attribute();
        assert_eq!(a, format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", k.to_base64()));
        assert_eq!(MasterKey::from_crypto_attribute(&a).unwrap(), k);
        // RFC 4568's example form: a lifetime, an MKI-less second key, session parameters
        let b = format!(
            "7 AES_CM_128_HMAC_SHA1_80 inline:{}|2^20;inline:AAAA KDR=0",
            k.to_base64()
        );
        assert_eq!(MasterKey::from_crypto_attribute(&b).unwrap(), k);
        assert!(MasterKey::from_crypto_attribute("1 F8_128_HMAC_SHA1_80 inline:AAAA").is_err());
        assert!(MasterKey::from_crypto_attribute("").is_err());
    }
}
