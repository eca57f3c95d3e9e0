//! Key custody evidence: the ceremony record, the signing session record and key rotation or
//! revocation statements (formats.md §4.5 to §4.7), in the same deterministic CBOR as every entry.
//!
//! Devices never read these; the signer writes them, the vault indexes them and auditors verify
//! them. They live here because this crate owns every wire format (design.md, "Workspace layout").
//!
//! The ceremony record and key statements are signed by the root key: their entries are
//! `{0: 1, 1: kind, 2: COSE_Sign1}` exactly like a release entry, and the COSE payload carries the
//! same header, so a root signature over one kind can never be read as another. Session records
//! are plain entries, authenticated like manifests by the checkpoint that includes them.

use crate::cbor::Reader;
use crate::entry::{EntryHeader, Kind};
use crate::error::{CborError, Context, Error, Item};
use crate::types::{Hash, Name, TextList, UnixTime};

/// Length of a ceremony id: 16 random bytes drawn at `ceremony init`.
pub const CEREMONY_ID_LEN: usize = 16;
/// Most custodians one ceremony can have (Shamir over GF(256) allows 255; 32 is plenty on paper).
pub const MAX_CUSTODIANS: u64 = 32;
/// Largest certificate carried in a record, in bytes.
pub const MAX_CERTIFICATE_LEN: usize = 4096;

/// Identifies one key ceremony: every share, session and key statement names it.
pub type CeremonyId = [u8; CEREMONY_ID_LEN];

/// A signed entry of a custody kind: `{0: 1, 1: kind, 2: COSE_Sign1}` (formats.md §4.5, §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedEntry<'a> {
    /// The entry's kind.
    pub kind: Kind,
    /// The COSE_Sign1 by the root key whose payload is the statement.
    pub cose_sign1: &'a [u8],
}

impl<'a> SignedEntry<'a> {
    const FIELDS: u64 = 3;

    /// Decodes a signed entry of `kind` (the COSE_Sign1 inside is not decoded).
    pub fn decode(bytes: &'a [u8], kind: Kind) -> Result<Self, Error> {
        let read = |r: &mut Reader<'a>| -> Result<Self, CborError> {
            EntryHeader::expect(r, kind, Self::FIELDS)?;
            r.key(2)?;
            let cose_sign1 = r.bytes()?;
            r.finish()?;
            Ok(Self { kind, cose_sign1 })
        };
        read(&mut Reader::new(bytes)).within(Item::Entry)
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(self.kind, Self::FIELDS);
        w.u64(2).bytes(self.cose_sign1);
        w.into_bytes()
    }
}

fn certificate<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], CborError> {
    let offset = r.position();
    let der = r.bytes()?;
    if der.is_empty() || der.len() > MAX_CERTIFICATE_LEN {
        return Err(CborError::OutOfRange { offset });
    }
    Ok(der)
}

/// What `ceremony init` did (formats.md §4.5): the token, the custodians and threshold, the three
/// keys' certificates, the log they started, and the software that ran it. Signed by the new root
/// key and appended as entry 0 of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CeremonyRecord<'a> {
    /// Ceremony id (key 2).
    pub ceremony_id: CeremonyId,
    /// When the ceremony ran (key 3).
    pub performed_at: UnixTime,
    /// Shares needed to unlock the token (key 4), 1 to the number of custodians.
    pub threshold: u8,
    /// The custodians, in share order: custodian `i` (from 0) holds share `i + 1` (key 5).
    pub custodians: TextList<'a>,
    /// PKCS#11 token label (key 6).
    pub token: Name<'a>,
    /// Origin (and checkpoint key name) of the log the ceremony started (key 7).
    pub origin: Name<'a>,
    /// Self-signed root CA certificate, DER (key 8).
    pub root_certificate: &'a [u8],
    /// Release key certificate issued by the root, DER (key 9).
    pub release_certificate: &'a [u8],
    /// Log key certificate issued by the root, DER (key 10).
    pub log_certificate: &'a [u8],
    /// The software that ran the ceremony, e.g. `cairn (cairn 0.1.0)`: executable and version (key 11).
    pub software: Name<'a>,
    /// SHA-256 of that software's executable (key 12).
    pub software_digest: Hash,
    /// How the ceremony came by its token (key 13, present only for
    /// [`TokenSetup::AdoptedPinRotated`], so records of initialised tokens are unchanged).
    pub token_setup: TokenSetup,
}

/// How a ceremony came by its token (formats.md §4.5, key 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSetup {
    /// The ceremony initialised a fresh token (`C_InitToken`) with PINs derived from its secret.
    Initialised,
    /// The ceremony adopted a token its security officer had initialised, and replaced the user
    /// PIN the security officer handed over with one derived from its secret (`C_SetPIN`), once.
    AdoptedPinRotated,
}

impl TokenSetup {
    /// The value of key 13 for [`TokenSetup::AdoptedPinRotated`].
    const ADOPTED_PIN_ROTATED: u64 = 1;
}

impl<'a> CeremonyRecord<'a> {
    const FIELDS: u64 = 13;
    /// With key 13.
    const FIELDS_ADOPTED: u64 = 14;

    /// Decodes a ceremony record (a COSE_Sign1 payload).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Ceremony)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let fields =
            EntryHeader::expect_one_of(r, Kind::CEREMONY, Self::FIELDS, Self::FIELDS_ADOPTED)?;
        r.key(2)?;
        let ceremony_id = r.bytes_fixed::<CEREMONY_ID_LEN>()?;
        r.key(3)?;
        let performed_at = UnixTime(r.u64()?);
        r.key(4)?;
        let threshold_offset = r.position();
        let threshold = r.u64()?;
        r.key(5)?;
        let custodians_offset = r.position();
        let custodians = TextList::decode(r, MAX_CUSTODIANS, |s| Name::new(s).is_some())?;
        if custodians.is_empty() {
            return Err(CborError::OutOfRange {
                offset: custodians_offset,
            });
        }
        let threshold = u8::try_from(threshold)
            .ok()
            .filter(|&k| k >= 1 && u64::from(k) <= custodians.len())
            .ok_or(CborError::OutOfRange {
                offset: threshold_offset,
            })?;
        r.key(6)?;
        let token = Name::decode(r)?;
        r.key(7)?;
        let origin = Name::decode(r)?;
        r.key(8)?;
        let root_certificate = certificate(r)?;
        r.key(9)?;
        let release_certificate = certificate(r)?;
        r.key(10)?;
        let log_certificate = certificate(r)?;
        r.key(11)?;
        let software = Name::decode(r)?;
        r.key(12)?;
        let software_digest = r.bytes_fixed::<32>()?;
        let token_setup = if fields == Self::FIELDS_ADOPTED {
            r.key(13)?;
            let offset = r.position();
            if r.u64()? != TokenSetup::ADOPTED_PIN_ROTATED {
                return Err(CborError::Unsupported { offset });
            }
            TokenSetup::AdoptedPinRotated
        } else {
            TokenSetup::Initialised
        };
        r.finish()?;
        Ok(Self {
            ceremony_id,
            performed_at,
            threshold,
            custodians,
            token,
            origin,
            root_certificate,
            release_certificate,
            log_certificate,
            software,
            software_digest,
            token_setup,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let fields = match self.token_setup {
            TokenSetup::Initialised => Self::FIELDS,
            TokenSetup::AdoptedPinRotated => Self::FIELDS_ADOPTED,
        };
        let mut w = EntryHeader::writer(Kind::CEREMONY, fields);
        w.u64(2).bytes(&self.ceremony_id);
        w.u64(3).u64(self.performed_at.0);
        w.u64(4).u64(u64::from(self.threshold));
        w.u64(5).array(self.custodians.len());
        for c in &self.custodians {
            w.text(c);
        }
        w.u64(6).text(self.token.as_str());
        w.u64(7).text(self.origin.as_str());
        w.u64(8).bytes(self.root_certificate);
        w.u64(9).bytes(self.release_certificate);
        w.u64(10).bytes(self.log_certificate);
        w.u64(11).text(self.software.as_str());
        w.u64(12).bytes(&self.software_digest);
        if self.token_setup == TokenSetup::AdoptedPinRotated {
            w.u64(13).u64(TokenSetup::ADOPTED_PIN_ROTATED);
        }
        w.into_bytes()
    }
}

/// One signing session (formats.md §4.6): the custodians whose shares unlocked the token, when,
/// and for what. Logged with the work the session did, in the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord<'a> {
    /// The ceremony whose shares were used (key 2).
    pub ceremony_id: CeremonyId,
    /// When the token was unlocked (key 3).
    pub opened_at: UnixTime,
    /// The custodians who presented their shares (key 4), at least one.
    pub custodians: TextList<'a>,
    /// What the session was for, e.g. `release sign controller-fw-2.4.1` (key 5).
    pub purpose: Name<'a>,
}

impl<'a> SessionRecord<'a> {
    const FIELDS: u64 = 6;

    /// Decodes a session record entry.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Session)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::SESSION, Self::FIELDS)?;
        r.key(2)?;
        let ceremony_id = r.bytes_fixed::<CEREMONY_ID_LEN>()?;
        r.key(3)?;
        let opened_at = UnixTime(r.u64()?);
        r.key(4)?;
        let offset = r.position();
        let custodians = TextList::decode(r, MAX_CUSTODIANS, |s| Name::new(s).is_some())?;
        if custodians.is_empty() {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(5)?;
        let purpose = Name::decode(r)?;
        r.finish()?;
        Ok(Self {
            ceremony_id,
            opened_at,
            custodians,
            purpose,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::SESSION, Self::FIELDS);
        w.u64(2).bytes(&self.ceremony_id);
        w.u64(3).u64(self.opened_at.0);
        w.u64(4).array(self.custodians.len());
        for c in &self.custodians {
            w.text(c);
        }
        w.u64(5).text(self.purpose.as_str());
        w.into_bytes()
    }
}

/// Which of the ceremony's keys a statement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyRole {
    /// The root CA key (0).
    Root,
    /// The release key (1).
    Release,
    /// The log key (2).
    Log,
}

impl KeyRole {
    /// The encoded value.
    pub fn code(self) -> u64 {
        match self {
            KeyRole::Root => 0,
            KeyRole::Release => 1,
            KeyRole::Log => 2,
        }
    }

    /// The role of an encoded value.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(KeyRole::Root),
            1 => Some(KeyRole::Release),
            2 => Some(KeyRole::Log),
            _ => None,
        }
    }

    /// The role's name, as used in labels and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyRole::Root => "root",
            KeyRole::Release => "release",
            KeyRole::Log => "log",
        }
    }
}

/// What a key statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyAction {
    /// A new key (its certificate in key 6) replaces the named one from now on (0).
    Rotate,
    /// The named key must no longer be trusted, for anything it signs after `issued_at` (1).
    Revoke,
}

/// A key rotation or revocation (formats.md §4.7), signed by the root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatement<'a> {
    /// The ceremony the keys belong to (key 2).
    pub ceremony_id: CeremonyId,
    /// Rotate or revoke (key 3).
    pub action: KeyAction,
    /// Which key (key 4).
    pub role: KeyRole,
    /// SHA-256 of the DER SubjectPublicKeyInfo of the key replaced or revoked (key 5).
    pub key_id: Hash,
    /// For a rotation, the new key's certificate issued by the root (DER); empty for a revocation
    /// (key 6).
    pub new_certificate: &'a [u8],
    /// Why (key 7).
    pub reason: Name<'a>,
    /// When (key 8).
    pub issued_at: UnixTime,
}

impl<'a> KeyStatement<'a> {
    const FIELDS: u64 = 9;

    /// Decodes a key statement (a COSE_Sign1 payload).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::KeyStatement)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::KEY, Self::FIELDS)?;
        r.key(2)?;
        let ceremony_id = r.bytes_fixed::<CEREMONY_ID_LEN>()?;
        r.key(3)?;
        let offset = r.position();
        let action = match r.u64()? {
            0 => KeyAction::Rotate,
            1 => KeyAction::Revoke,
            _ => return Err(CborError::OutOfRange { offset }),
        };
        r.key(4)?;
        let offset = r.position();
        let role = KeyRole::from_code(r.u64()?).ok_or(CborError::OutOfRange { offset })?;
        r.key(5)?;
        let key_id = r.bytes_fixed::<32>()?;
        r.key(6)?;
        let offset = r.position();
        let new_certificate = r.bytes()?;
        // A rotation names its new key; a revocation names none. The root is not rotated by a
        // statement (a new root is a new ceremony).
        let consistent = match action {
            KeyAction::Rotate => {
                role != KeyRole::Root
                    && !new_certificate.is_empty()
                    && new_certificate.len() <= MAX_CERTIFICATE_LEN
            }
            KeyAction::Revoke => new_certificate.is_empty(),
        };
        if !consistent {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(7)?;
        let reason = Name::decode(r)?;
        r.key(8)?;
        let issued_at = UnixTime(r.u64()?);
        r.finish()?;
        Ok(Self {
            ceremony_id,
            action,
            role,
            key_id,
            new_certificate,
            reason,
            issued_at,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::KEY, Self::FIELDS);
        w.u64(2).bytes(&self.ceremony_id);
        w.u64(3).u64(match self.action {
            KeyAction::Rotate => 0,
            KeyAction::Revoke => 1,
        });
        w.u64(4).u64(self.role.code());
        w.u64(5).bytes(&self.key_id);
        w.u64(6).bytes(self.new_certificate);
        w.u64(7).text(self.reason.as_str());
        w.u64(8).u64(self.issued_at.0);
        w.into_bytes()
    }
}
