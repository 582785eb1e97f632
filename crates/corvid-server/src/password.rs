//! Password files in Mosquitto's format: one `user:hash` a line, where the hash is
//!
//! - `$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512, 64-byte output (what `corvid passwd` and
//!   `mosquitto_passwd` write);
//! - `$6$<base64 salt>$<base64 hash>`: the legacy single SHA-512 of the password followed by the salt.
//!
//! Base64 is the standard alphabet, with padding (read with or without). Blank lines and lines starting with `#`
//! are skipped. Hashes are compared in constant time, and an unknown user costs as much as a known one.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Standard base64; padding written, and optional when read.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Iterations of PBKDF2 in a new `$7$` hash unless told otherwise (Mosquitto's default).
pub(crate) const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length of a new hash, in bytes (Mosquitto's).
const SALT_LEN: usize = 12;
/// Length of a SHA-512 output, the hash of both formats.
const HASH_LEN: usize = 64;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: u32, salt: Vec<u8>, hash: [u8; HASH_LEN] },
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_LEN] },
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2 { iterations, .. } => write!(f, "PasswordHash($7$, {iterations} iterations)"),
            Self::Sha512 { .. } => f.write_str("PasswordHash($6$)"),
        }
    }
}

impl PasswordHash {
    /// A new `$7$` hash of `password` with a random salt.
    pub(crate) fn pbkdf2(password: &[u8], iterations: u32) -> Result<Self, getrandom::Error> {
        let mut salt = vec![0; SALT_LEN];
        getrandom::fill(&mut salt)?;
        let hash = pbkdf2_sha512(password, &salt, iterations);
        Ok(Self::Pbkdf2 { iterations, salt, hash })
    }

    /// A new legacy `$6$` hash of `password` with a random salt.
    pub(crate) fn sha512(password: &[u8]) -> Result<Self, getrandom::Error> {
        let mut salt = vec![0; SALT_LEN];
        getrandom::fill(&mut salt)?;
        let hash = sha512(password, &salt);
        Ok(Self::Sha512 { salt, hash })
    }

    /// Parses `$7$...` or `$6$...`; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let decode = |what: &str, b64: &str| B64.decode(b64).map_err(|e| format!("{what} is not base64 ({e})"));
        let hash_of = |b64: &str| -> Result<[u8; HASH_LEN], String> {
            let bytes = decode("the hash", b64)?;
            <[u8; HASH_LEN]>::try_from(bytes.as_slice())
                .map_err(|_| format!("the hash is {} bytes, a SHA-512 hash is {HASH_LEN}", bytes.len()))
        };
        if let Some(rest) = text.strip_prefix("$7$") {
            let parts: Vec<&str> = rest.split('$').collect();
            let [iterations, salt, hash] = parts[..] else {
                return Err("a $7$ hash is $7$<iterations>$<base64 salt>$<base64 hash>".to_owned());
            };
            let iterations = match iterations.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("iterations {iterations:?} is not a number from 1 to {}", u32::MAX)),
            };
            let salt = decode("the salt", salt)?;
            if salt.is_empty() {
                return Err("the salt is empty".to_owned());
            }
            Ok(Self::Pbkdf2 { iterations, salt, hash: hash_of(hash)? })
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let parts: Vec<&str> = rest.split('$').collect();
            let [salt, hash] = parts[..] else {
                return Err("a $6$ hash is $6$<base64 salt>$<base64 hash>".to_owned());
            };
            let salt = decode("the salt", salt)?;
            if salt.is_empty() {
                return Err("the salt is empty".to_owned());
            }
            Ok(Self::Sha512 { salt, hash: hash_of(hash)? })
        } else if text.is_empty() {
            Err("no password hash after ':'".to_owned())
        } else {
            Err("the password is not a $7$ or $6$ hash (a plain-text file? `corvid passwd -U FILE` hashes it)"
                .to_owned())
        }
    }

    /// Whether `password` is the one hashed, compared in constant time.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let computed = match self {
            Self::Pbkdf2 { iterations, salt, .. } => pbkdf2_sha512(password, salt, *iterations),
            Self::Sha512 { salt, .. } => sha512(password, salt),
        };
        let (Self::Pbkdf2 { hash, .. } | Self::Sha512 { hash, .. }) = self;
        computed.ct_eq(hash).into()
    }
}

impl fmt::Display for PasswordHash {
    /// The file form, `$7$101$<salt>$<hash>` or `$6$<salt>$<hash>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2 { iterations, salt, hash } => {
                write!(f, "$7${iterations}${}${}", B64.encode(salt), B64.encode(hash))
            }
            Self::Sha512 { salt, hash } => write!(f, "$6${}${}", B64.encode(salt), B64.encode(hash)),
        }
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

fn sha512(password: &[u8], salt: &[u8]) -> [u8; HASH_LEN] {
    let mut digest = Sha512::new();
    digest.update(password);
    digest.update(salt);
    digest.finalize().into()
}

/// A malformed password file: the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordFileError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },
}

/// The users of a password file and their hashes.
#[derive(Debug, Default)]
pub(crate) struct PasswordFile {
    users: HashMap<String, PasswordHash>,
    /// Verified against when the user is unknown, so that an unknown user takes as long as a known one.
    decoy: Option<PasswordHash>,
}

/// How a user name and password fare against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The password is right.
    Accepted,
    /// Unknown user, wrong or missing password.
    Refused,
}

impl PasswordFile {
    /// Reads and parses `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|(line, message)| PasswordFileError::Line { path: path.to_owned(), line, message })
    }

    /// Parses the text of a password file; the error is the line number (1-based) and what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((number, "expected user:hash, found no ':'".to_owned()));
            };
            if user.is_empty() {
                return Err((number, "empty user name before ':'".to_owned()));
            }
            let hash = PasswordHash::parse(hash).map_err(|e| (number, format!("user {user:?}: {e}")))?;
            if let Some(first) = lines_of.insert(user.to_owned(), number) {
                return Err((number, format!("user {user:?} is already on line {first}")));
            }
            users.insert(user.to_owned(), hash);
        }
        let decoy = users.values().find(|h| matches!(h, PasswordHash::Pbkdf2 { .. })).cloned();
        Ok(Self { users, decoy })
    }

    /// How many users the file has.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// Checks a user name and password.
    pub(crate) fn check(&self, username: &str, password: Option<&[u8]>) -> Verdict {
        match (self.users.get(username), password) {
            (Some(hash), Some(password)) if hash.verify(password) => Verdict::Accepted,
            (Some(_), _) => Verdict::Refused,
            (None, password) => {
                if let Some(decoy) = &self.decoy {
                    let _ = decoy.verify(password.unwrap_or_default());
                }
                Verdict::Refused
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `mosquitto_passwd -b` 2.0.11 (password "secret") and `mosquitto_passwd -H sha512 -b` ("pw2").
    const MOSQUITTO: &str = "\
alice:$7$101$0YNLpIZi/zbp/iwF$WMlN27Yq4sU4tEFse2RknjGfQwajOLlatv+UI708G0N4AT9yiYuKTHEMv4O5z1DCy+ZMnd5UGw61LmBRVY0img==
bob:$6$dB3YJCcZ8LUKn1sp$neXhbgNBV0zm8eJ2t6tEQeCPguomYUGYyIZiRQD1Q4oTIdTm8b3i/I9TTXxgMaFgz4ZzdFFy2DuQkR6c+UXjCA==
";

    #[test]
    fn mosquitto_hashes_verify() {
        let file = PasswordFile::parse(MOSQUITTO).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.check("alice", Some(b"secret")), Verdict::Accepted);
        assert_eq!(file.check("alice", Some(b"Secret")), Verdict::Refused);
        assert_eq!(file.check("alice", None), Verdict::Refused);
        assert_eq!(file.check("bob", Some(b"pw2")), Verdict::Accepted);
        assert_eq!(file.check("bob", Some(b"secret")), Verdict::Refused);
        assert_eq!(file.check("carol", Some(b"secret")), Verdict::Refused);
    }

    #[test]
    fn new_hashes_round_trip() {
        let hash = PasswordHash::pbkdf2(b"p@ss", DEFAULT_ITERATIONS).unwrap();
        let text = hash.to_string();
        assert!(text.starts_with("$7$101$") && text.ends_with("=="), "{text}");
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"p@ss") && !parsed.verify(b"p@s"));
        let legacy = PasswordHash::parse(&PasswordHash::sha512(b"x").unwrap().to_string()).unwrap();
        assert!(legacy.verify(b"x") && !legacy.verify(b"y"));
        // Two hashes of one password differ by their salt.
        assert_ne!(PasswordHash::pbkdf2(b"p@ss", 101).unwrap(), hash);
    }

    #[test]
    fn known_pbkdf2_sha512_vector() {
        // RFC 6070-style vector for HMAC-SHA512 (password "password", salt "salt", 1 iteration).
        let out = pbkdf2_sha512(b"password", b"salt", 1);
        assert_eq!(
            &out[..8],
            &[0x86, 0x7f, 0x70, 0xcf, 0x1a, 0xde, 0x02, 0xcf],
            "PBKDF2-HMAC-SHA512(password, salt, 1)"
        );
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let file = PasswordFile::parse(&format!("# users\n\n   \n{MOSQUITTO}\n# end\n")).unwrap();
        assert_eq!(file.len(), 2);
    }

    #[test]
    fn malformed_lines_name_the_line_and_the_fault() {
        let good = MOSQUITTO.lines().next().unwrap();
        for (text, line, expected) in [
            (format!("{good}\nbob\n"), 2, "no ':'"),
            (format!("{good}\n:$6$AAAA$AAAA\n"), 2, "empty user name"),
            (format!("# c\n{good}\nbob:secret\n"), 3, "not a $7$ or $6$ hash"),
            ("bob:$7$abc$AAAA$AAAA\n".to_owned(), 1, "iterations"),
            ("bob:$7$0$AAAA$AAAA\n".to_owned(), 1, "iterations"),
            ("bob:$7$101$AAAA\n".to_owned(), 1, "$7$<iterations>"),
            ("bob:$7$101$!!!$AAAA\n".to_owned(), 1, "salt is not base64"),
            ("bob:$6$AAAA$AAAA\n".to_owned(), 1, "the hash is 3 bytes"),
            ("bob:\n".to_owned(), 1, "no password hash"),
            (format!("{good}\n{good}\n"), 2, "already on line 1"),
        ] {
            let (n, message) = PasswordFile::parse(&text).unwrap_err();
            assert_eq!(n, line, "{text}: {message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}
