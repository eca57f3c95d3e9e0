//! What cairn asks a module for when it generates a key, and what it requires of the key the
//! module made (docs/ceremony.md, "Keys on the token"; PKCS#11 3.0 §4.8 to §4.9, §6.3.4).
//!
//! The templates name only the attributes cairn needs. Modules map attributes onto their own key
//! models, and some reject templates a conforming module must accept otherwise: tpm2-pkcs11
//! derives `CKA_VERIFY` and `CKA_DECRYPT` from one TPM object attribute and refuses a key pair
//! whose templates set them apart ("User specified and TPM specified attr mismatch"). What matters
//! is then checked on the key the module reports, never assumed from the template: a module that
//! ignores `CKA_SENSITIVE` or grants `CKA_DECRYPT` is refused, naming the attribute.

use cryptoki::object::{Attribute, AttributeType};

/// DER of the P-256 curve OID (`prime256v1`, 1.2.840.10045.3.1.7) for `CKA_EC_PARAMS`.
pub(crate) const P256_PARAMS: [u8; 10] =
    [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The templates of `C_GenerateKeyPair` with `CKM_EC_KEY_PAIR_GEN` (public, private).
pub(crate) fn templates(label: &[u8], id: &[u8]) -> (Vec<Attribute>, Vec<Attribute>) {
    let public = vec![
        Attribute::Token(true),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Unwrap(false),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    (public, private)
}

/// How an attribute must read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Must {
    /// Reported, and true.
    BeTrue,
    /// Reported, and false.
    BeFalse,
    /// False, or not reported at all (the object has no such capability).
    NotBeTrue,
}

/// The attributes read back from every cairn private key, and what each must say.
const REQUIRED: [(AttributeType, &str, Must); 8] = [
    (AttributeType::Sensitive, "CKA_SENSITIVE", Must::BeTrue),
    (AttributeType::Extractable, "CKA_EXTRACTABLE", Must::BeFalse),
    (
        AttributeType::AlwaysSensitive,
        "CKA_ALWAYS_SENSITIVE",
        Must::BeTrue,
    ),
    (
        AttributeType::NeverExtractable,
        "CKA_NEVER_EXTRACTABLE",
        Must::BeTrue,
    ),
    (AttributeType::Sign, "CKA_SIGN", Must::BeTrue),
    (AttributeType::Decrypt, "CKA_DECRYPT", Must::NotBeTrue),
    (AttributeType::Derive, "CKA_DERIVE", Must::NotBeTrue),
    (AttributeType::Unwrap, "CKA_UNWRAP", Must::NotBeTrue),
];

/// The attribute types [`check`] needs, for `C_GetAttributeValue`.
pub(crate) const READ_BACK: [AttributeType; 8] = [
    REQUIRED[0].0,
    REQUIRED[1].0,
    REQUIRED[2].0,
    REQUIRED[3].0,
    REQUIRED[4].0,
    REQUIRED[5].0,
    REQUIRED[6].0,
    REQUIRED[7].0,
];

/// The first attribute a key reports weaker than cairn requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Weakened {
    /// Its PKCS#11 name, e.g. `CKA_SENSITIVE`.
    pub attribute: &'static str,
    /// What the module reported: `true`, `false` or `not reported`.
    pub reported: &'static str,
    /// What cairn requires.
    pub required: &'static str,
}

/// Checks the attributes a module reported for a private key (the answer of
/// `C_GetAttributeValue` for [`READ_BACK`]; an attribute the module does not report is absent).
pub(crate) fn check(reported: &[Attribute]) -> Result<(), Weakened> {
    for (kind, name, must) in REQUIRED {
        let value = reported
            .iter()
            .find(|a| a.attribute_type() == kind)
            .and_then(bool_of);
        let ok = match must {
            Must::BeTrue => value == Some(true),
            Must::BeFalse => value == Some(false),
            Must::NotBeTrue => value != Some(true),
        };
        if !ok {
            return Err(Weakened {
                attribute: name,
                reported: match value {
                    Some(true) => "true",
                    Some(false) => "false",
                    None => "not reported",
                },
                required: match must {
                    Must::BeTrue => "true",
                    Must::BeFalse => "false",
                    Must::NotBeTrue => "false or absent",
                },
            });
        }
    }
    Ok(())
}

fn bool_of(a: &Attribute) -> Option<bool> {
    match *a {
        Attribute::Sensitive(v)
        | Attribute::Extractable(v)
        | Attribute::AlwaysSensitive(v)
        | Attribute::NeverExtractable(v)
        | Attribute::Sign(v)
        | Attribute::Decrypt(v)
        | Attribute::Derive(v)
        | Attribute::Unwrap(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SoftHSM2 2.6 and tpm2-pkcs11 1.9 report for a key made from [`templates`].
    fn good() -> Vec<Attribute> {
        vec![
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Unwrap(false),
        ]
    }

    #[test]
    fn a_key_as_asked_passes_and_optional_capabilities_may_be_absent() {
        assert_eq!(check(&good()), Ok(()));
        let mut without = good();
        without.retain(|a| {
            !matches!(
                a,
                Attribute::Decrypt(_) | Attribute::Derive(_) | Attribute::Unwrap(_)
            )
        });
        assert_eq!(check(&without), Ok(()));
    }

    #[test]
    fn each_weakened_attribute_is_named() {
        let cases = [
            (Attribute::Sensitive(false), "CKA_SENSITIVE", "false"),
            (Attribute::Extractable(true), "CKA_EXTRACTABLE", "true"),
            (
                Attribute::AlwaysSensitive(false),
                "CKA_ALWAYS_SENSITIVE",
                "false",
            ),
            (
                Attribute::NeverExtractable(false),
                "CKA_NEVER_EXTRACTABLE",
                "false",
            ),
            (Attribute::Sign(false), "CKA_SIGN", "false"),
            (Attribute::Decrypt(true), "CKA_DECRYPT", "true"),
            (Attribute::Derive(true), "CKA_DERIVE", "true"),
            (Attribute::Unwrap(true), "CKA_UNWRAP", "true"),
        ];
        for (weak, name, reported) in cases {
            let mut attrs = good();
            attrs.retain(|a| a.attribute_type() != weak.attribute_type());
            attrs.push(weak);
            let w = check(&attrs).unwrap_err();
            assert_eq!((w.attribute, w.reported), (name, reported));
        }
    }

    #[test]
    fn a_protection_attribute_the_module_does_not_report_is_refused() {
        for missing in [
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::NeverExtractable,
            AttributeType::Sign,
        ] {
            let mut attrs = good();
            attrs.retain(|a| a.attribute_type() != missing);
            let w = check(&attrs).unwrap_err();
            assert_eq!(w.reported, "not reported", "{missing:?}");
        }
    }
}
