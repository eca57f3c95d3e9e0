//! A logged-in session on a cairn token: generating the ceremony's keys with a template every
//! conforming module accepts, reading back what the module made of it, and finding keys by URI.

use std::cell::Cell;
use std::fmt;

use cairn_verifier::custody::KeyRole;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::ecdsa::{Signature, VerifyingKey};

use super::HsmKey;
use super::policy::{self, P256_PARAMS};
use crate::error::{Error, Result, pkcs11};
use crate::uri::Pkcs11Uri;

/// A logged-in session on a cairn token.
pub struct Token {
    pub(super) session: Session,
    pub(super) label: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// How a private key is protected, as the token reports it.
#[expect(
    clippy::struct_excessive_bools,
    reason = "the four PKCS#11 attributes, as the token reports them"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
}

impl Token {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URI of key `role`/`generation` on this token.
    pub fn uri(&self, role: KeyRole, generation: u8) -> Pkcs11Uri {
        Pkcs11Uri::for_key(&self.label, role, generation)
    }

    /// Generates key `role`/`generation` on the token: EC P-256, sensitive, never extractable,
    /// private key usable for signing only. The template names only what cairn needs
    /// (docs/ceremony.md, "Keys on the token"); what the module made is then read back, and a
    /// key that is weaker than asked is destroyed and refused with [`Error::KeyWeakened`].
    pub fn generate_key(&self, role: KeyRole, generation: u8) -> Result<HsmKey<'_>> {
        self.generate_key_overriding(role, generation, &[])
    }

    /// [`Token::generate_key`] with attributes of the private key's template replaced by
    /// `overrides`: how the tests play a module that makes weaker keys than it is asked for, so
    /// that the real read-back check is what refuses them.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn generate_key_weakened(
        &self,
        role: KeyRole,
        generation: u8,
        overrides: &[Attribute],
    ) -> Result<HsmKey<'_>> {
        self.generate_key_overriding(role, generation, overrides)
    }

    fn generate_key_overriding(
        &self,
        role: KeyRole,
        generation: u8,
        overrides: &[Attribute],
    ) -> Result<HsmKey<'_>> {
        let uri = self.uri(role, generation);
        if self.find_private(&uri)?.is_some() {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: "a key with this label and id already exists".into(),
            });
        }
        let label = uri.object.clone().into_bytes();
        let (public, mut private) = policy::templates(&label, &uri.id);
        for o in overrides {
            private.retain(|a| a.attribute_type() != o.attribute_type());
            private.push(o.clone());
        }
        let (public_handle, private_handle) = self
            .session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(pkcs11("C_GenerateKeyPair"))?;
        if let Err(e) = self.check_private(&uri, private_handle) {
            // Nothing weaker than asked stays on the token.
            let _ = self.session.destroy_object(private_handle);
            let _ = self.session.destroy_object(public_handle);
            return Err(e);
        }
        self.key(role, generation)
    }

    /// Key `role`/`generation`, checked to be a P-256 signing key that cannot leave the token.
    pub fn key(&self, role: KeyRole, generation: u8) -> Result<HsmKey<'_>> {
        self.key_at(&self.uri(role, generation))
    }

    /// The key a `pkcs11:` URI names (its `object` and `id` attributes), checked as [`Token::key`].
    pub fn key_at(&self, uri: &Pkcs11Uri) -> Result<HsmKey<'_>> {
        if uri.token.as_deref().is_some_and(|t| t != self.label) {
            return Err(Error::Uri(format!(
                "{uri} names token {:?}, this session is on {:?}",
                uri.token.as_deref().unwrap_or_default(),
                self.label
            )));
        }
        let Some(private) = self.find_private(uri)? else {
            return Err(Error::KeyNotFound {
                uri: uri.to_string(),
            });
        };
        self.check_private(uri, private)?;
        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(uri.object.clone().into_bytes()),
        ];
        if !uri.id.is_empty() {
            template.push(Attribute::Id(uri.id.clone()));
        }
        let publics = self
            .session
            .find_objects(&template)
            .map_err(pkcs11("C_FindObjects"))?;
        let [public_handle] = publics.as_slice() else {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!("{} public key objects match, expected 1", publics.len()),
            });
        };
        let attrs = self
            .session
            .get_attributes(
                *public_handle,
                &[AttributeType::EcParams, AttributeType::EcPoint],
            )
            .map_err(pkcs11("C_GetAttributeValue"))?;
        let mut params = None;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        if params.as_deref() != Some(&P256_PARAMS[..]) {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: "not a P-256 key".into(),
            });
        }
        let point = point.ok_or_else(|| Error::KeyUnusable {
            uri: uri.to_string(),
            why: "the token does not report CKA_EC_POINT".into(),
        })?;
        let public = parse_ec_point(&point).ok_or_else(|| Error::KeyUnusable {
            uri: uri.to_string(),
            why: "CKA_EC_POINT is not an uncompressed P-256 point".into(),
        })?;
        Ok(HsmKey {
            token: self,
            private,
            public,
            uri: uri.to_string(),
            failure: Cell::new(None),
        })
    }

    /// Refuses a token that already holds a key of a ceremony: one is adopted only empty.
    pub(super) fn refuse_cairn_keys(&self) -> Result<()> {
        for role in [KeyRole::Root, KeyRole::Release, KeyRole::Log] {
            let uri = self.uri(role, 0);
            if self.find_private(&uri)?.is_some() {
                return Err(Error::KeyUnusable {
                    uri: uri.to_string(),
                    why: "the token already holds a ceremony's keys; a ceremony adopts a token \
                          without them"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// Reads back a private key's attributes and checks them against what cairn requires
    /// ([`policy::check`]): the same check after generation and on every use.
    fn check_private(&self, uri: &Pkcs11Uri, private: ObjectHandle) -> Result<()> {
        let attrs = self
            .session
            .get_attributes(private, &policy::READ_BACK)
            .map_err(pkcs11("C_GetAttributeValue"))?;
        policy::check(&attrs).map_err(|w| Error::KeyWeakened {
            uri: uri.to_string(),
            attribute: w.attribute,
            reported: w.reported,
            required: w.required,
        })
    }

    fn find_private(&self, uri: &Pkcs11Uri) -> Result<Option<ObjectHandle>> {
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(uri.object.clone().into_bytes()),
        ];
        if !uri.id.is_empty() {
            template.push(Attribute::Id(uri.id.clone()));
        }
        let found = self
            .session
            .find_objects(&template)
            .map_err(pkcs11("C_FindObjects"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!("{} private keys match, expected 1", many.len()),
            }),
        }
    }

    /// The protection attributes of a private key object.
    pub fn protection_of(&self, private: ObjectHandle) -> Result<Protection> {
        let attrs = self
            .session
            .get_attributes(
                private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(pkcs11("C_GetAttributeValue"))?;
        let mut p = Protection {
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Asks the token for a private key's `CKA_VALUE`: `Ok(None)` when the token withholds it, as
    /// it must for every cairn key (the tests assert it).
    pub fn private_value(&self, private: ObjectHandle) -> Result<Option<Vec<u8>>> {
        match self
            .session
            .get_attributes(private, &[AttributeType::Value])
        {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })),
            // CKR_ATTRIBUTE_SENSITIVE: the token refuses, which is the expected answer.
            Err(cryptoki::error::Error::Pkcs11(RvError::AttributeSensitive, _)) => Ok(None),
            Err(e) => Err(pkcs11("C_GetAttributeValue")(e)),
        }
    }

    /// Destroys key `role`/`generation`, its private and public objects: a key a rotation made
    /// and did not log (docs/ceremony.md, "An interrupted signing session").
    pub fn destroy_key(&self, role: KeyRole, generation: u8) -> Result<()> {
        let uri = self.uri(role, generation);
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let mut template = vec![
                Attribute::Class(class),
                Attribute::Label(uri.object.clone().into_bytes()),
            ];
            if !uri.id.is_empty() {
                template.push(Attribute::Id(uri.id.clone()));
            }
            for object in self
                .session
                .find_objects(&template)
                .map_err(pkcs11("C_FindObjects"))?
            {
                self.destroy(object)?;
            }
        }
        Ok(())
    }

    /// Destroys an object. Tests use it to make the token fail mid-session.
    pub fn destroy(&self, object: ObjectHandle) -> Result<()> {
        self.session
            .destroy_object(object)
            .map_err(pkcs11("C_DestroyObject"))
    }

    /// The raw PKCS#11 session, for the benchmark's baseline (a bare `C_Sign` loop).
    pub fn raw_session(&self) -> &Session {
        &self.session
    }

    /// Fills `buf` from the token's random number generator.
    pub fn random(&self, buf: &mut [u8]) -> Result<()> {
        self.session
            .generate_random_slice(buf)
            .map_err(pkcs11("C_GenerateRandom"))
    }

    pub(super) fn sign_digest(&self, key: ObjectHandle, digest: &[u8; 32]) -> Result<Signature> {
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, key, digest)
            .map_err(pkcs11("C_Sign"))?;
        Signature::from_slice(&raw).map_err(|_| Error::Pkcs11 {
            call: "C_Sign",
            source: cryptoki::error::Error::InvalidValue,
        })
    }
}

/// `CKA_EC_POINT`: an uncompressed SEC1 point, DER-wrapped in an OCTET STRING (PKCS#11 2.40
/// §2.3.3) or, by some modules, bare.
fn parse_ec_point(value: &[u8]) -> Option<VerifyingKey> {
    let sec1 = match value {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => value,
    };
    if sec1.len() != 65 {
        return None;
    }
    VerifyingKey::from_sec1_bytes(sec1).ok()
}
