//! Checkpoints: a C2SP tlog-checkpoint body inside a C2SP signed note, signed with ECDSA P-256.
//!
//! ```text
//! <origin>\n                       C2SP tlog-checkpoint: origin line
//! <tree size, decimal>\n                                     tree size
//! <base64 root hash>\n                                       root hash (RFC 9162 §2.1.1)
//! [<extension line>\n ...]                                   optional, non-empty lines
//! \n                               C2SP signed-note: blank line ends the text
//! — <key name> <base64(key_id[4] || DER ECDSA signature)>\n  one line per signature
//! ```
//!
//! The signature is ECDSA P-256 over SHA-256 of the note text (everything before the blank line,
//! including its final newline), DER-encoded (RFC 5480 §2.2); the key id is the first four bytes of
//! SHA-256 of the key's DER `SubjectPublicKeyInfo`. This is the rule Rekor uses for its ECDSA
//! checkpoints, so sigstore's verifiers accept ours.

use base64ct::{Base64, Encoding};

use crate::crypto::{Crypto, PublicKey, der_to_raw};
use crate::error::{Error, NoteError};
use crate::types::{Hash, TreeSize};

/// Largest note a verifier accepts, in bytes.
pub const MAX_NOTE_LEN: usize = 8 * 1024;
/// Most signature lines a verifier processes (C2SP signed-note lets verifiers reject more than 100).
pub const MAX_SIGNATURES: usize = 100;
/// The signature line prefix: U+2014 EM DASH and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The key that signs checkpoints of one log, as a device or auditor pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogKey<'a> {
    /// The log's origin line.
    pub origin: &'a str,
    /// The key name on signature lines.
    pub name: &'a str,
    /// The ECDSA P-256 public key.
    pub public: PublicKey,
    /// First four bytes of SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub key_id: [u8; 4],
}

impl<'a> LogKey<'a> {
    /// Pins `public` as the key of the log `origin`, signing as `name`. Returns `None` if the
    /// origin or name could not appear in a valid note.
    pub fn new(
        origin: &'a str,
        name: &'a str,
        public: PublicKey,
        crypto: &impl Crypto,
    ) -> Option<Self> {
        if !valid_origin(origin) || !valid_key_name(name) {
            return None;
        }
        let hash = public.key_hash(crypto);
        let key_id = [hash[0], hash[1], hash[2], hash[3]];
        Some(Self {
            origin,
            name,
            public,
            key_id,
        })
    }
}

fn valid_origin(origin: &str) -> bool {
    // C2SP signed-note forbids ASCII control characters (the parser's rule); other Unicode is text.
    !origin.is_empty() && !origin.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// C2SP signed-note: a key name is non-empty and contains no Unicode spaces and no plus sign.
pub(crate) fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// A parsed checkpoint. Parsing checks the syntax only; [`Checkpoint::verify`] checks the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    /// The origin line: which log this is.
    pub origin: &'a str,
    /// Number of entries in the tree.
    pub size: TreeSize,
    /// RFC 9162 root hash of the tree.
    pub root: Hash,
    /// Extension lines after the root hash, each ending in a newline (often empty).
    pub extensions: &'a str,
    /// The signed note text (ends with a newline).
    pub text: &'a str,
    /// The signature lines, each ending in a newline.
    pub signatures: &'a str,
}

/// One signature line of a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    /// The key name.
    pub name: &'a str,
    /// The base64 text after the name.
    pub base64: &'a str,
}

impl<'a> Checkpoint<'a> {
    /// Parses a signed checkpoint note.
    pub fn parse(note: &'a [u8]) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge);
        }
        let note = core::str::from_utf8(note).map_err(|e| NoteError::NotText {
            offset: e.valid_up_to(),
        })?;
        if let Some(offset) = note
            .bytes()
            .position(|b| b != b'\n' && (b < 0x20 || b == 0x7f))
        {
            return Err(NoteError::NotText { offset });
        }
        // C2SP signed-note: the signatures follow the last blank line.
        let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let text_end = split.checked_add(1).ok_or(NoteError::NoSignatureBlock)?;
        let (text, rest) = note.split_at(text_end);
        let signatures = rest.strip_prefix('\n').ok_or(NoteError::NoSignatureBlock)?;

        let mut lines = text.split_inclusive('\n');
        let mut line = || -> Result<&'a str, NoteError> {
            let l = lines.next().ok_or(NoteError::MissingLine)?;
            l.strip_suffix('\n').ok_or(NoteError::MissingLine)
        };
        let origin = line()?;
        if origin.is_empty() {
            return Err(NoteError::EmptyOrigin);
        }
        let size = parse_size(line()?).ok_or(NoteError::BadSize)?;
        let root = parse_root(line()?).ok_or(NoteError::BadRootHash)?;
        let extensions = text.get(lines_len(text, 3)..).unwrap_or_default();
        if extensions.split_inclusive('\n').any(|l| l == "\n") {
            return Err(NoteError::EmptyLine);
        }

        let checkpoint = Self {
            origin,
            size: TreeSize(size),
            root,
            extensions,
            text,
            signatures,
        };
        let mut count = 0usize;
        for sig in checkpoint.signature_lines() {
            sig?;
            count = count.saturating_add(1);
            if count > MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
        }
        if count == 0 {
            return Err(NoteError::BadSignatureLine { line: 1 });
        }
        Ok(checkpoint)
    }

    /// The signature lines, parsed.
    pub fn signature_lines(
        &self,
    ) -> impl Iterator<Item = Result<NoteSignature<'a>, NoteError>> + 'a {
        self.signatures
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, raw)| {
                let bad = NoteError::BadSignatureLine {
                    line: i.saturating_add(1),
                };
                let line = raw.strip_suffix('\n').ok_or(bad)?;
                let body = line.strip_prefix(SIGNATURE_PREFIX).ok_or(bad)?;
                let (name, base64) = body.split_once(' ').ok_or(bad)?;
                let b64_ok = base64.len() >= 8
                    && base64.len() % 4 == 0
                    && base64
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                if !valid_key_name(name) || !b64_ok {
                    return Err(bad);
                }
                Ok(NoteSignature { name, base64 })
            })
    }

    /// Verifies that this checkpoint is from the log `key` pins: the origin matches and the
    /// signature line from that key (same name and key id) verifies over the note text.
    /// Signatures from other keys (witnesses, for example) are ignored, as C2SP requires.
    pub fn verify(&self, key: &LogKey<'_>, crypto: &impl Crypto) -> Result<(), Error> {
        if self.origin != key.origin {
            return Err(Error::CheckpointOrigin);
        }
        for line in self.signature_lines() {
            let line = line.map_err(Error::MalformedCheckpoint)?;
            if line.name != key.name {
                continue;
            }
            let mut buf = [0u8; 4 + 72];
            let Ok(decoded) = Base64::decode(line.base64, &mut buf) else {
                continue;
            };
            let Some((key_id, der)) = decoded.split_first_chunk::<4>() else {
                continue;
            };
            if *key_id != key.key_id {
                continue;
            }
            let signature = der_to_raw(der).ok_or(Error::CheckpointSignature)?;
            let digest = crypto.sha256_of(&[self.text.as_bytes()]);
            return if crypto.verify_p256(&key.public, &digest, &signature) {
                Ok(())
            } else {
                Err(Error::CheckpointSignature)
            };
        }
        Err(Error::CheckpointKeyMissing)
    }
}

/// Byte length of the first `n` lines of `text`.
fn lines_len(text: &str, n: usize) -> usize {
    text.split_inclusive('\n')
        .take(n)
        .map(str::len)
        .fold(0, usize::saturating_add)
}

/// C2SP tlog-checkpoint: the size is ASCII decimal without leading zeros.
fn parse_size(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

fn parse_root(s: &str) -> Option<Hash> {
    let mut root = [0u8; 32];
    // base64ct rejects non-canonical padding and trailing bits.
    let decoded = Base64::decode(s, &mut root).ok()?;
    (decoded.len() == 32).then_some(root)
}

/// Building and signing checkpoints (host side).
#[cfg(feature = "alloc")]
pub mod write {
    use alloc::format;
    use alloc::string::String;

    use base64ct::{Base64, Encoding};

    use super::LogKey;
    use crate::crypto::{Signature, raw_to_der};
    use crate::types::{Hash, TreeSize};

    /// The checkpoint note text: origin, size and root lines, then the extension lines.
    ///
    /// Extension lines must be non-empty and free of ASCII control characters (newline included);
    /// they are dropped otherwise (an invalid line would make the note unparseable).
    pub fn body(origin: &str, size: TreeSize, root: &Hash, extensions: &[&str]) -> String {
        let mut text = format!("{origin}\n{}\n{}\n", size.0, Base64::encode_string(root));
        for ext in extensions {
            if !ext.is_empty() && !ext.bytes().any(|b| b < 0x20 || b == 0x7f) {
                text.push_str(ext);
                text.push('\n');
            }
        }
        text
    }

    /// The signed note: `text`, a blank line, and the signature line of `key` carrying
    /// `signature` (ECDSA P-256 over SHA-256 of `text`).
    pub fn signed_note(text: &str, key: &LogKey<'_>, signature: &Signature) -> String {
        let mut der = [0u8; 72];
        let n = raw_to_der(signature, &mut der);
        let mut blob = alloc::vec::Vec::with_capacity(4 + n);
        blob.extend_from_slice(&key.key_id);
        blob.extend_from_slice(der.get(..n).unwrap_or_default());
        format!(
            "{text}\n{}{} {}\n",
            super::SIGNATURE_PREFIX,
            key.name,
            Base64::encode_string(&blob)
        )
    }

    /// Signs `text` with `signer` (an HSM key or a software key) and returns the signed note.
    pub fn sign<S>(text: &str, key: &LogKey<'_>, signer: &S) -> Result<String, signature::Error>
    where
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let sig = signer.try_sign(text.as_bytes())?;
        let raw: [u8; 64] = sig.to_bytes().into();
        Ok(signed_note(text, key, &Signature(raw)))
    }
}
