//! Where PKCS#11 modules differ in ways cairn must plan for, found by asking the module
//! (`C_GetInfo`, `C_GetSlotInfo`, `C_GetTokenInfo`, `C_GetMechanismInfo`) rather than by its
//! file name (docs/ceremony.md, "Modules").
//!
//! Most of a profile is probed: PIN lengths, whether the slot and the ECDSA mechanisms are in
//! hardware, the ECDSA key sizes. Two things cannot be learnt without spending a wrong PIN against
//! the token's lockout, which cairn never does: whether failed logins show in the token flags
//! (`CKF_USER_PIN_COUNT_LOW`, `CKF_USER_PIN_FINAL_TRY`, `CKF_USER_PIN_LOCKED`, optional in PKCS#11
//! 3.0 §5.5) and how lockout works. For those, modules cairn has met are recognised by what
//! `C_GetInfo` says of the library (its manufacturer and description, not a path), and every
//! other module gets the safe answer: failures not reported, lockout assumed.

use std::fmt;

/// How a token reports failed user logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailures {
    /// Through the `CKF_USER_PIN_COUNT_LOW` / `FINAL_TRY` / `LOCKED` token flags (SoftHSM2).
    Flags,
    /// Not through the token flags (tpm2-pkcs11, and any module cairn does not know): a failed
    /// login shows only as `CKR_PIN_INCORRECT` or `CKR_PIN_LOCKED` to the caller that made it.
    NotReported,
}

/// What wrong PINs cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// No lockout (SoftHSM2): a software token for tests and demonstrations.
    None,
    /// The TPM's dictionary-attack protection: wrong PINs of any token on the TPM count against
    /// one counter (3 tries, then 1000 s, by default), so one bad login can lock every token.
    TpmDictionaryAttack,
    /// Unknown: assumed to lock the token after a few tries, as an HSM does.
    Assumed,
}

/// The modules cairn has met, as `C_GetInfo` describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleFamily {
    /// SoftHSM2 (OpenDNSSEC).
    SoftHsm2,
    /// tpm2-pkcs11 (tpm2-software), on a TPM 2.0.
    Tpm2Pkcs11,
    /// Any other module.
    Other,
}

/// A module's behaviour where modules differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleProfile {
    /// `C_GetInfo`: the library's manufacturer and description.
    pub library: String,
    /// The family `C_GetInfo` names, where cairn knows it.
    pub family: ModuleFamily,
    /// `C_GetTokenInfo`: shortest and longest PIN the token takes.
    pub pin_length: (usize, usize),
    /// `C_GetSlotInfo` `CKF_HW_SLOT`: the slot is a hardware device.
    pub hardware_slot: bool,
    /// `C_GetMechanismInfo(CKM_ECDSA)` `CKF_HW`: signing happens in hardware.
    pub hardware_ecdsa: bool,
    /// `C_GetMechanismInfo(CKM_ECDSA)`: smallest and largest key size, in bits.
    pub ecdsa_key_bits: (usize, usize),
    /// How failed logins are reported (recognised, see the module documentation).
    pub login_failures: LoginFailures,
    /// What wrong PINs cost (recognised, see the module documentation).
    pub lockout: Lockout,
}

impl ModuleProfile {
    /// Whether `pin_len` bytes fit the token's PIN length range.
    pub fn accepts_pin_len(&self, pin_len: usize) -> bool {
        (self.pin_length.0..=self.pin_length.1).contains(&pin_len)
    }

    /// The family of the library `C_GetInfo` describes.
    pub(crate) fn recognise(manufacturer: &str, description: &str) -> ModuleFamily {
        let (m, d) = (manufacturer.trim_end(), description.trim_end());
        if m.contains("SoftHSM") || d.contains("SoftHSM") {
            ModuleFamily::SoftHsm2
        } else if m.contains("tpm2-software") || d.contains("TPM2") {
            ModuleFamily::Tpm2Pkcs11
        } else {
            ModuleFamily::Other
        }
    }

    /// How failed logins are reported and what wrong PINs cost, for a family.
    pub(crate) fn behaviour(family: ModuleFamily) -> (LoginFailures, Lockout) {
        match family {
            ModuleFamily::SoftHsm2 => (LoginFailures::Flags, Lockout::None),
            ModuleFamily::Tpm2Pkcs11 => (LoginFailures::NotReported, Lockout::TpmDictionaryAttack),
            ModuleFamily::Other => (LoginFailures::NotReported, Lockout::Assumed),
        }
    }

    /// How an operator resets token `label` that a failed ceremony left behind: initialised by
    /// cairn with PINs nobody holds (`adopted == false`), or adopted with its user PIN rotated to
    /// one nobody holds (`adopted == true`).
    pub fn reset_hint(&self, label: &str, adopted: bool) -> String {
        if adopted {
            return format!(
                "the security officer resets the user PIN of token {label:?} (C_InitPIN as SO, \
                 e.g. `pkcs11-tool --module MODULE --token-label {label:?} --login --login-type so \
                 --init-pin`) and deletes any objects labelled cairn-* on it"
            );
        }
        match self.family {
            ModuleFamily::SoftHsm2 => {
                format!("delete it with `softhsm2-util --delete-token --token {label:?}`")
            }
            ModuleFamily::Tpm2Pkcs11 => format!(
                "delete it with `tpm2_ptool rmtoken --label {label:?} --path \"$TPM2_PKCS11_STORE\"`"
            ),
            ModuleFamily::Other => format!(
                "re-initialise token {label:?} with the module vendor's tool (its security \
                 officer PIN was derived from the ceremony's secret, which is gone)"
            ),
        }
    }
}

impl fmt::Display for ModuleProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: PIN {}-{} bytes, {} slot, ECDSA {} ({}-{} bits), failed logins {}, lockout {}",
            self.library,
            self.pin_length.0,
            self.pin_length.1,
            if self.hardware_slot {
                "hardware"
            } else {
                "software"
            },
            if self.hardware_ecdsa {
                "in hardware"
            } else {
                "in software"
            },
            self.ecdsa_key_bits.0,
            self.ecdsa_key_bits.1,
            match self.login_failures {
                LoginFailures::Flags => "in the token flags",
                LoginFailures::NotReported => "not reported",
            },
            match self.lockout {
                Lockout::None => "none",
                Lockout::TpmDictionaryAttack => "the TPM's dictionary-attack counter",
                Lockout::Assumed => "assumed",
            }
        )
    }
}
